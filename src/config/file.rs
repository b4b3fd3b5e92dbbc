//! The configuration file: flat TOML keys named as the long flags without `--` (`shards = 4`,
//! `max_payload` or `max-payload`), each turned into the command-line words that would set its
//! flag. Nothing here names a flag: the keys are checked against the command's definition.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

use super::source::{LoadError, Source};

/// Long flags that are not settings but say how to read them (or ask clap something).
const NOT_SETTINGS: &[&str] = &["help", "version", "config", "print-config"];

/// The args a file may set (and `--print-config` prints): every long flag of `command` but
/// [`NOT_SETTINGS`], in the command's order.
pub(super) fn settings(command: &Command) -> impl Iterator<Item = &Arg> {
    command
        .get_arguments()
        .filter(|arg| arg.get_long().is_some_and(|l| !NOT_SETTINGS.contains(&l)))
}

/// Whether `arg` is a switch (a flag without a value).
pub(super) fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// Whether `arg` may be given several times (a TOML array).
pub(super) fn is_repeatable(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// Whether `arg` holds a secret: its values are masked wherever shardio shows them.
pub(super) fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

/// One key of the file, matched to its arg.
#[derive(Debug)]
pub(super) struct Entry {
    /// The key as the file writes it.
    pub(super) key: String,
    /// The id of the arg it sets.
    pub(super) id: String,
    value: toml::Value,
}

/// A configuration file, read and checked: every key names a setting, once.
#[derive(Debug)]
pub(super) struct ConfigFile {
    pub(super) path: PathBuf,
    pub(super) entries: Vec<Entry>,
}

impl ConfigFile {
    /// Reads and checks the file at `path` against `command`.
    pub(super) fn read(path: &Path, command: &Command) -> Result<ConfigFile, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
            path: path.to_owned(),
            error,
        })?;
        ConfigFile::parse(path, &text, command)
    }

    /// Checks `text`, the file at `path`, against `command`.
    pub(super) fn parse(path: &Path, text: &str, command: &Command) -> Result<Self, LoadError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| LoadError::Toml {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut entries: Vec<Entry> = Vec::with_capacity(table.len());
        for (key, value) in table {
            let flag = key.replace('_', "-");
            let Some(arg) = settings(command).find(|a| a.get_long() == Some(flag.as_str())) else {
                return Err(LoadError::UnknownKey {
                    path: path.to_owned(),
                    key,
                });
            };
            let id = arg.get_id().as_str().to_owned();
            if let Some(earlier) = entries.iter().find(|e| e.id == id) {
                return Err(LoadError::DuplicateKey {
                    path: path.to_owned(),
                    key,
                    earlier: earlier.key.clone(),
                });
            }
            entries.push(Entry { key, id, value });
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            entries,
        })
    }

    /// Where `entry`'s value comes from.
    pub(super) fn source(&self, entry: &Entry) -> Source {
        Source::File {
            path: self.path.clone(),
            key: entry.key.clone(),
        }
    }

    /// The command-line words that give `entry`'s value to `arg`: `--flag=value` (once per
    /// element of an array, for a repeatable flag), or `--flag` for a switch set to `true`.
    pub(super) fn words(&self, entry: &Entry, arg: &Arg) -> Result<Vec<OsString>, LoadError> {
        let long = arg.get_long().unwrap_or_default();
        let invalid = |reason: &str| LoadError::Invalid {
            flag: long.to_owned(),
            value: if is_secret(arg) {
                "(secret)".to_owned()
            } else {
                entry.value.to_string()
            },
            origin: self.source(entry),
            reason: reason.to_owned(),
        };
        if is_switch(arg) {
            let on = entry
                .value
                .as_bool()
                .ok_or_else(|| invalid("a switch takes true or false"))?;
            let given = on == matches!(arg.get_action(), ArgAction::SetTrue);
            return Ok(if given {
                vec![format!("--{long}").into()]
            } else {
                Vec::new()
            });
        }
        let values = match &entry.value {
            toml::Value::Array(items) if is_repeatable(arg) => items.iter().collect(),
            toml::Value::Array(_) => return Err(invalid("takes one value, not an array")),
            value => vec![value],
        };
        values
            .into_iter()
            .map(|value| {
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Datetime(d) => d.to_string(),
                    toml::Value::Array(_) | toml::Value::Table(_) => return Err(invalid(
                        "keys are flat and take a string, a number, a boolean or an array of them",
                    )),
                };
                Ok(format!("--{long}={text}").into())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<ConfigFile, LoadError> {
        ConfigFile::parse(Path::new("test.toml"), text, &built())
    }

    fn built() -> Command {
        let mut command = Config::command();
        command.build();
        command
    }

    fn words(text: &str) -> Result<Vec<String>, LoadError> {
        let command = built();
        let file = parse(text)?;
        let mut out = Vec::new();
        for entry in &file.entries {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id().as_str() == entry.id)
                .unwrap();
            out.extend(
                file.words(entry, arg)?
                    .into_iter()
                    .map(|w| w.into_string().unwrap()),
            );
        }
        Ok(out)
    }

    #[test]
    fn keys_become_the_words_of_their_flags() {
        let text = r#"
            listen = "127.0.0.1:4000"
            shards = 4
            max_payload = 1000
            namespace = ["/a", "/b"]
            no-pin = true
            cors-credentials = false
            client-publish = false
        "#;
        assert_eq!(
            words(text).unwrap(),
            [
                "--listen=127.0.0.1:4000",
                "--shards=4",
                "--max-payload=1000",
                "--namespace=/a",
                "--namespace=/b",
                "--no-pin",
                "--client-publish=false",
            ]
        );
    }

    #[test]
    fn unknown_and_duplicate_keys_are_named() {
        let err = parse("shards = 2\nshard = 3\n").unwrap_err();
        assert!(matches!(&err, LoadError::UnknownKey { key, .. } if key == "shard"));
        assert!(err.to_string().contains("\"shard\"") && err.to_string().contains("test.toml"));
        for not_a_setting in ["config = \"x.toml\"", "print-config = true", "help = true"] {
            assert!(matches!(
                parse(not_a_setting),
                Err(LoadError::UnknownKey { .. })
            ));
        }
        let err = parse("max-payload = 1\nmax_payload = 2\n").unwrap_err();
        assert!(matches!(err, LoadError::DuplicateKey { .. }), "{err}");
        assert!(matches!(
            parse("shards = "),
            Err(LoadError::Toml { message, .. }) if message.contains("line 1")
        ));
    }

    #[test]
    fn wrong_shapes_name_key_value_and_file() {
        for (text, reason) in [
            ("listen = [\"a\", \"b\"]", "not an array"),
            ("no-pin = \"yes\"", "true or false"),
            ("[redis]\nprefix = \"x\"", "flat"),
            ("[limits]\nmax-headers = 3", "unknown key \"limits\""),
            ("namespace = [[\"/a\"]]", "flat"),
        ] {
            let err = words(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(err.contains("test.toml"), "{text}: {err}");
        }
        let err = words("jwt-secret = [[\"hunter2\"]]")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
