//! `--print-config`: the effective configuration as a configuration file, every setting in
//! the command's order, secrets masked, each value not at its default followed by where it
//! came from.

use std::fmt::Write as _;

use super::file;
use super::load::Loaded;
use super::source::Source;

/// What a secret's values print as.
const MASK: &str = "********";

impl Loaded {
    /// The effective configuration as TOML that `--config` reads back: every setting, unset
    /// ones commented out, secrets masked.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# shardio's effective configuration (--print-config): flags over SHARDIO_* variables\n\
             # over the --config file over the defaults. Secrets are masked; settings without a\n\
             # value are commented out.\n\n",
        );
        for arg in file::settings(&self.command) {
            let id = arg.get_id().as_str();
            let key = arg.get_long().unwrap_or(id);
            let raw: Vec<String> = self
                .matches
                .get_raw(id)
                .into_iter()
                .flatten()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let shown = |v: &String| {
                if file::is_secret(arg) {
                    toml_value(MASK)
                } else {
                    toml_value(v)
                }
            };
            let value = if file::is_switch(arg) {
                Some(self.matches.get_flag(id).to_string())
            } else if file::is_repeatable(arg) {
                Some(format!(
                    "[{}]",
                    raw.iter().map(shown).collect::<Vec<_>>().join(", ")
                ))
            } else {
                raw.first().map(shown)
            };
            let _ = match (value, self.source(id)) {
                (None, _) => match default_note(arg) {
                    Some(note) => writeln!(out, "# {key} = (not set; default: {note})"),
                    None => writeln!(out, "# {key} = (not set)"),
                },
                (Some(value), Source::Default) => writeln!(out, "{key} = {value}"),
                (Some(value), source) => writeln!(out, "{key} = {value}  # from {source}"),
            };
        }
        out
    }
}

/// What the help of `arg` says of its default (`Default: the host name.`), for a default
/// that is computed or means "off" and has no value clap could show.
pub(super) fn default_note(arg: &clap::Arg) -> Option<String> {
    let help = arg.get_long_help().or(arg.get_help())?.to_string();
    let (_, after) = help.split_once("Default: ")?;
    let note = after.split(". ").next()?.trim_end_matches(['.', '\n']);
    Some(note.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A raw value as TOML: an integer or a boolean when it reads back as the same text, else a
/// string (the file hands every value to clap as text, so either reads back the same).
fn toml_value(raw: &str) -> String {
    let integer = raw.parse::<i64>().is_ok_and(|i| i.to_string() == raw);
    if integer || raw == "true" || raw == "false" {
        raw.to_owned()
    } else {
        toml::Value::String(raw.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;
    use crate::config::load;

    #[test]
    fn every_setting_prints_and_reads_back_the_same() {
        let loaded = load([
            "shardio",
            "--shards=3",
            "--namespace=/a,/b",
            "--cookie",
            "io \"x\"",
            "--no-pin",
            "--client-publish=off",
        ])
        .unwrap();
        let printed = loaded.to_toml();
        assert!(
            printed.contains("\nshards = 3  # from the command line\n"),
            "{printed}"
        );
        assert!(
            printed.contains("\nnamespace = [\"/a\", \"/b\"]  # from"),
            "{printed}"
        );
        assert!(
            printed.contains("\nlisten = \"0.0.0.0:3000\"\n"),
            "{printed}"
        );
        assert!(printed.contains("\nno-pin = true  # from"), "{printed}");
        assert!(
            printed.contains(
                "\n# redis = (not set; default: off, the process serves its own clients only)\n"
            ),
            "{printed}"
        );
        for not_a_setting in ["print-config =", "config =", "help =", "version ="] {
            assert!(
                !printed.contains(&format!("\n{not_a_setting}")),
                "{printed}"
            );
            assert!(
                !printed.contains(&format!("# {not_a_setting}")),
                "{printed}"
            );
        }
        // Read back, it gives the same configuration.
        let path = std::env::temp_dir().join(format!("shardio-{}-print.toml", std::process::id()));
        std::fs::write(&path, &printed).unwrap();
        let again = load(["shardio".into(), format!("--config={}", path.display())]);
        let _ = std::fs::remove_file(&path);
        let again = again.unwrap();
        assert_eq!(
            format!("{:?}", again.config.runtime),
            format!("{:?}", loaded.config.runtime)
        );
        assert_eq!(again.config.namespaces, loaded.config.namespaces);
        assert_eq!(again.config.cookie, loaded.config.cookie);
        assert!(!again.config.auth.client_publish);
    }

    #[test]
    fn help_shows_every_default() {
        let mut command = crate::config::Config::command();
        command.build();
        let help = command.render_long_help().to_string();
        for arg in file::settings(&command) {
            let long = arg.get_long().unwrap();
            let takes_value = !file::is_switch(arg);
            assert!(
                !takes_value || !arg.get_default_values().is_empty() || default_note(arg).is_some(),
                "--{long}: no default shown; say `Default: ...` in its help"
            );
            if let Some(default) = arg.get_default_values().first().filter(|_| takes_value) {
                let shown = format!("[default: {}]", default.to_string_lossy());
                assert!(help.contains(&shown), "--{long}: {shown} not in --help");
            }
        }
        let shards = command
            .get_arguments()
            .find(|a| a.get_long() == Some("shards"));
        assert_eq!(
            default_note(shards.unwrap()).as_deref(),
            Some("the number of available cores")
        );
    }

    #[test]
    fn secrets_are_masked() {
        let loaded = load([
            "shardio",
            "--jwt-secret=hunter2-hunter2",
            "--api-key=0123456789abcdef-key",
        ])
        .unwrap();
        let printed = loaded.to_toml();
        assert!(
            !printed.contains("hunter2") && !printed.contains("abcdef-key"),
            "{printed}"
        );
        assert!(
            printed.contains("\njwt-secret = [\"********\"]  # from"),
            "{printed}"
        );
        assert!(
            printed.contains("\napi-key = [\"********\"]  # from"),
            "{printed}"
        );
    }
}
