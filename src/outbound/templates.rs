//! Operator-editable mail templates: `<name>.subject`, `<name>.txt` and optionally `<name>.html`
//! for each of registration, approval and acknowledgement, rendered with minijinja.
//!
//! Loading checks every file: a syntax error, an unknown variable or a failure to render sample
//! values is reported as `file:line: why`, at start-up and by `intake check-config`. Rendering
//! is strict (an unknown name is an error, never an empty string) and fuel-limited, so a broken
//! or runaway template fails one mail, not the worker.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The three kinds of mail intake sends.
pub const TEMPLATE_NAMES: [&str; 3] = ["registration", "approval", "acknowledgement"];

/// Every variable a template may use, with what it holds (for the README and error messages).
pub const VARIABLES: [(&str, &str); 8] = [
    (
        "client_name",
        "the client's display name; empty when unknown",
    ),
    ("client_email", "the client's email address"),
    ("client_approval", "\"pending\" or \"approved\""),
    ("organisation", "the client's organisation"),
    (
        "incident_hash",
        "the incident hash, such as ABC-123-45678; none without an incident",
    ),
    (
        "incident_subject",
        "the incident's subject; none without an incident",
    ),
    (
        "support_address",
        "the address to write to: the incident's mailbox, else [smtp] from",
    ),
    (
        "portal_url",
        "[outbound] portal_url; none when not configured",
    ),
];

/// Enough for any sensible template; a loop that runs away stops here.
const FUEL: u64 = 100_000;

/// A template file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {detail}", .file.display(), .line.map(|line| format!(":{line}")).unwrap_or_default())]
pub struct TemplateError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub detail: String,
}

/// What a template is rendered with. Strings from clients arrive here raw; the HTML body
/// escapes them, and `compose` strips control characters from whatever reaches a header.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Context {
    pub client_name: String,
    pub client_email: String,
    pub client_approval: String,
    pub organisation: String,
    pub incident_hash: Option<String>,
    pub incident_subject: Option<String>,
    pub support_address: String,
    pub portal_url: Option<String>,
}

impl Context {
    fn sample() -> Context {
        Context {
            client_name: "Ada Lovelace".to_string(),
            client_email: "ada@example.com".to_string(),
            client_approval: "pending".to_string(),
            organisation: "Example Ltd".to_string(),
            incident_hash: Some("ABC-123-45678".to_string()),
            incident_subject: Some("Printer on fire".to_string()),
            support_address: "support@example.com".to_string(),
            portal_url: Some("https://help.example.com".to_string()),
        }
    }
}

/// One rendered mail, before headers are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// The loaded, checked templates.
pub struct Templates {
    env: Environment<'static>,
    dir: PathBuf,
    with_html: BTreeSet<&'static str>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Templates")
            .field("dir", &self.dir)
            .field("with_html", &self.with_html)
            .finish()
    }
}

impl Templates {
    /// Reads and checks every template under `dir`.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        // Bodies end with a newline as their files do; block tags leave no blank lines.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|error| from_minijinja(dir, &error))?;
        env.set_syntax(syntax);
        let mut with_html = BTreeSet::new();
        let mut sources = BTreeMap::new();
        for name in TEMPLATE_NAMES {
            for (extension, required) in [("subject", true), ("txt", true), ("html", false)] {
                let file_name = format!("{name}.{extension}");
                let path = dir.join(&file_name);
                let source = match std::fs::read_to_string(&path) {
                    Ok(source) => source,
                    Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => {
                        continue;
                    }
                    Err(error) => {
                        return Err(TemplateError {
                            file: path,
                            line: None,
                            detail: format!("cannot read the template: {error}"),
                        });
                    }
                };
                if extension == "html" {
                    with_html.insert(name);
                }
                env.add_template_owned(file_name.clone(), source.clone())
                    .map_err(|error| from_minijinja(dir, &error))?;
                sources.insert(file_name, source);
            }
        }
        let templates = Templates {
            env,
            dir: dir.to_path_buf(),
            with_html,
        };
        for (file_name, source) in &sources {
            templates.check_variables(file_name, source)?;
        }
        for name in TEMPLATE_NAMES {
            templates.render(name, &Context::sample())?;
            let bare = Context {
                client_name: String::new(),
                incident_hash: None,
                incident_subject: None,
                portal_url: None,
                ..Context::sample()
            };
            templates.render(name, &bare)?;
        }
        Ok(templates)
    }

    /// Renders one kind of mail. The subject is one line; the bodies are as written.
    pub fn render(&self, name: &str, context: &Context) -> Result<Rendered, TemplateError> {
        let render = |file_name: String| -> Result<String, TemplateError> {
            self.env
                .get_template(&file_name)
                .and_then(|template| template.render(minijinja::value::Serde(context)))
                .map_err(|error| from_minijinja(&self.dir, &error))
        };
        let subject = render(format!("{name}.subject"))?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        if subject.is_empty() {
            return Err(TemplateError {
                file: self.dir.join(format!("{name}.subject")),
                line: None,
                detail: "the subject renders empty".to_string(),
            });
        }
        let text = render(format!("{name}.txt"))?;
        let html = if self.with_html.contains(name) {
            Some(render(format!("{name}.html"))?)
        } else {
            None
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    fn check_variables(&self, file_name: &str, source: &str) -> Result<(), TemplateError> {
        let template = self
            .env
            .get_template(file_name)
            .map_err(|error| from_minijinja(&self.dir, &error))?;
        let known: BTreeSet<&str> = VARIABLES.iter().map(|(name, _)| *name).collect();
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| !known.contains(name.as_str()) && !is_builtin(name))
            .collect();
        unknown.sort();
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        Err(TemplateError {
            file: self.dir.join(file_name),
            line: line_of(source, first),
            detail: format!(
                "unknown variable `{first}`; a template may use {}",
                VARIABLES
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// Names minijinja provides itself: functions such as `range` and the loop variable.
fn is_builtin(name: &str) -> bool {
    matches!(
        name,
        "range" | "dict" | "namespace" | "debug" | "loop" | "self"
    )
}

fn from_minijinja(dir: &Path, error: &minijinja::Error) -> TemplateError {
    let file = error
        .name()
        .map(|name| dir.join(name))
        .unwrap_or_else(|| dir.to_path_buf());
    let detail = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    TemplateError {
        file,
        line: error.line(),
        detail,
    }
}

/// The first line where `name` appears as a whole word inside a `{{ }}` or `{% %}` tag.
fn line_of(source: &str, name: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut line = 1;
    let mut rest = source;
    while let Some(open) = rest.find(['{']) {
        line += rest[..open].matches('\n').count();
        rest = &rest[open..];
        let close = match rest.get(..2) {
            Some("{{") => "}}",
            Some("{%") => "%}",
            _ => {
                rest = &rest[1..];
                continue;
            }
        };
        let end = rest.find(close).map(|end| end + 2).unwrap_or(rest.len());
        let tag = &rest[..end];
        let found = tag.match_indices(name).any(|(at, _)| {
            let before = tag[..at].chars().next_back();
            let after = tag[at + name.len()..].chars().next();
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        });
        if found {
            return Some(line);
        }
        line += tag.matches('\n').count();
        rest = &rest[end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_set(dir: &Path, overrides: &[(&str, &str)]) {
        for name in TEMPLATE_NAMES {
            std::fs::write(
                dir.join(format!("{name}.subject")),
                "Hello {{ client_email }}\n",
            )
            .expect("write subject");
            std::fs::write(
                dir.join(format!("{name}.txt")),
                "Dear {{ client_name or client_email }},\n{% if incident_hash %}[#{{ incident_hash }}]{% endif %}\n",
            )
            .expect("write body");
        }
        for (file, text) in overrides {
            std::fs::write(dir.join(file), text).expect("write override");
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "intake-templates-{tag}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[test]
    fn shipped_templates_load_and_render() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
        let templates = Templates::load(&dir).expect("shipped templates are valid");
        let context = Context::sample();
        for name in TEMPLATE_NAMES {
            let rendered = templates.render(name, &context).expect("renders");
            assert!(!rendered.subject.contains('\n'));
            assert!(rendered.text.ends_with('\n'), "{name}: body ends a line");
            assert!(rendered.html.is_some(), "{name}: shipped with an HTML body");
        }
        let ack = templates
            .render("acknowledgement", &context)
            .expect("renders");
        assert!(ack.subject.contains("[#ABC-123-45678]"), "{}", ack.subject);
        assert!(ack.text.contains("ABC-123-45678"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = temp_dir("syntax");
        write_set(
            &dir,
            &[("approval.txt", "Hello\n\n{% if client_name %}\nunclosed\n")],
        );
        let error = Templates::load(&dir).expect_err("syntax error");
        assert_eq!(error.file, dir.join("approval.txt"));
        assert!(error.line.is_some(), "{error}");

        write_set(
            &dir,
            &[(
                "acknowledgement.txt",
                "Line one\nLine two {{ client_email }}\n{{ incident_hsh }}\n",
            )],
        );
        let error = Templates::load(&dir).expect_err("unknown variable");
        assert_eq!(error.file, dir.join("acknowledgement.txt"));
        assert_eq!(error.line, Some(3), "{error}");
        assert!(error.detail.contains("incident_hsh"), "{error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}:3:", dir.join("acknowledgement.txt").display())),
            "{error}"
        );

        write_set(
            &dir,
            &[("registration.html", "{{ client_email | nosuchfilter }}")],
        );
        let error = Templates::load(&dir).expect_err("unknown filter");
        assert_eq!(error.file, dir.join("registration.html"));

        std::fs::remove_file(dir.join("registration.html")).expect("remove");
        std::fs::remove_file(dir.join("approval.subject")).expect("remove");
        let error = Templates::load(&dir).expect_err("missing file");
        assert_eq!(error.file, dir.join("approval.subject"));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn html_escapes_and_subject_is_one_line() {
        let dir = temp_dir("escape");
        write_set(
            &dir,
            &[
                ("registration.subject", "Welcome\n{{ client_name }}\n"),
                ("registration.html", "<p>{{ client_name }}</p>\n"),
            ],
        );
        let templates = Templates::load(&dir).expect("valid");
        let context = Context {
            client_name: "<script>x</script>\r\nBcc: evil@example.com".to_string(),
            ..Context::sample()
        };
        let rendered = templates.render("registration", &context).expect("renders");
        assert!(
            !rendered.subject.contains(['\r', '\n']),
            "{:?}",
            rendered.subject
        );
        let html = rendered.html.expect("html body");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn word_lines() {
        assert_eq!(line_of("a\n{{ x }}\n{{ xy }}", "xy"), Some(3));
        assert_eq!(line_of("xy\n{% if xy %}", "xy"), Some(2));
        assert_eq!(line_of("{{ a }}", "b"), None);
    }
}
