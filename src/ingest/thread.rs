//! Which incident a message continues, and the hijack rule for subject tags.
//!
//! Pure. A Message-ID in In-Reply-To or References is hard to guess, so a match there always
//! threads. A `[#HASH]` tag is easy to guess, so a tag alone threads only when the sender is the
//! incident's client or belongs to its organisation (the default organisation does not count:
//! it gathers unrelated free-mail senders).

use super::{ClientId, IncidentFacts, OrganisationId};

/// Who is writing, as far as the tag rule cares.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    pub client: Option<ClientId>,
    /// The client's organisation, or for an unknown sender the one their domain would place them in.
    pub organisation: Option<OrganisationId>,
}

/// May `writer` add to `incident` on the strength of a subject tag alone?
pub fn tag_may_thread(
    writer: Writer,
    incident: &IncidentFacts,
    default_organisation: OrganisationId,
) -> bool {
    let same_client = writer.client.is_some() && writer.client == incident.client;
    let same_organisation = writer.organisation == Some(incident.organisation)
        && incident.organisation != default_organisation;
    same_client || same_organisation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::IncidentStatus;

    const DEFAULT: OrganisationId = 1;
    const CONTOSO: OrganisationId = 2;
    const FABRIKAM: OrganisationId = 3;

    fn incident(client: ClientId, organisation: OrganisationId) -> IncidentFacts {
        IncidentFacts {
            id: 100,
            hash: "KXW-482-91735".into(),
            client: Some(client),
            organisation,
            status: IncidentStatus::Open,
        }
    }

    #[test]
    fn table() {
        let cases = [
            // The incident's own client.
            (
                Writer {
                    client: Some(10),
                    organisation: Some(CONTOSO),
                },
                incident(10, CONTOSO),
                true,
            ),
            // A colleague in the same organisation.
            (
                Writer {
                    client: Some(11),
                    organisation: Some(CONTOSO),
                },
                incident(10, CONTOSO),
                true,
            ),
            // An unknown sender whose domain belongs to the organisation.
            (
                Writer {
                    client: None,
                    organisation: Some(CONTOSO),
                },
                incident(10, CONTOSO),
                true,
            ),
            // Another organisation guessing the hash.
            (
                Writer {
                    client: Some(20),
                    organisation: Some(FABRIKAM),
                },
                incident(10, CONTOSO),
                false,
            ),
            // Two free-mail users share only the default organisation.
            (
                Writer {
                    client: Some(30),
                    organisation: Some(DEFAULT),
                },
                incident(31, DEFAULT),
                false,
            ),
            (
                Writer {
                    client: Some(31),
                    organisation: Some(DEFAULT),
                },
                incident(31, DEFAULT),
                true,
            ),
            (
                Writer {
                    client: None,
                    organisation: None,
                },
                incident(10, CONTOSO),
                false,
            ),
        ];
        for (writer, incident, expected) in cases {
            assert_eq!(
                tag_may_thread(writer, &incident, DEFAULT),
                expected,
                "{writer:?}"
            );
        }
    }
}
