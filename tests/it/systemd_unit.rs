//! The shipped unit, `systemd/intake.service`: `systemd-analyze verify` accepts it and
//! `systemd-analyze security` rates its exposure at most 2.0 ("OK"; README records the score).

use std::process::Command;

/// 2.0 on systemd's 0–10 exposure scale; `--threshold` counts in tenths.
const MAX_EXPOSURE_TENTHS: u32 = 20;

fn analyze(args: &[&str]) -> (bool, String) {
    let output = Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("systemd-analyze {args:?}: {error} (scripts/test installs systemd)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    let unit = include_str!("../../systemd/intake.service");
    for expected in [
        "Type=notify",
        "ExecStart=/usr/local/bin/intake -c /etc/intake/intake.toml run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=intake",
        "ConfigurationDirectory=intake",
        "LoadCredential=",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(expected), "the unit lacks {expected}");
    }
    // verify checks that ExecStart names an executable: point it at the binary under test.
    let dir = tempfile::tempdir().expect("a directory for the unit");
    let path = dir.path().join("intake.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/intake", env!("CARGO_BIN_EXE_intake")),
    )
    .expect("write the unit");
    let path = path.display().to_string();

    let (ok, text) = analyze(&["verify", &path]);
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );

    let threshold = format!("--threshold={MAX_EXPOSURE_TENTHS}");
    let (ok, text) = analyze(&["security", "--offline=true", &threshold, &path]);
    let exposure = text
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for intake.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(
        ok && exposure <= f64::from(MAX_EXPOSURE_TENTHS) / 10.0,
        "exposure {exposure}:\n{text}"
    );
}
