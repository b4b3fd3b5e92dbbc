//! Loading the configuration from its three sources, highest precedence first: flags, the
//! `SHARDIO_*` environment, the file of `--config`, then the defaults. clap reads the first two
//! (and the defaults); the file's values are given to clap as flags, only for the settings
//! that neither the command line nor the environment set, and everything is parsed again.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::file::{self, ConfigFile};
use super::source::{LoadError, Source};
use super::Config;

/// A configuration read from the command line, the environment and the file, with where each
/// setting came from.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The command it was parsed with (built).
    pub(super) command: Command,
    /// clap's matches of the last parse: raw values and their sources.
    pub(super) matches: ArgMatches,
    /// The file, and the ids of the args it set.
    file: Option<(ConfigFile, HashMap<String, usize>)>,
}

/// Loads the configuration from `args` (the program name first, as `std::env::args_os`), the
/// process's `SHARDIO_*` environment, and the file `--config` (or `SHARDIO_CONFIG`) names.
/// Errors name the setting, its value and its source.
pub fn load<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut command = Config::command();
    command.build();
    let mut words: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut matches = parse(&command, &words, None)?;
    let mut file = None;
    if let Some(path) = matches.get_one::<PathBuf>("config").cloned() {
        let config_file = ConfigFile::read(&path, &command)?;
        let mut set = HashMap::new();
        for (index, entry) in config_file.entries.iter().enumerate() {
            if matches!(
                matches.value_source(&entry.id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            let arg = find(&command, &entry.id).expect("the file's keys are args");
            words.extend(config_file.words(entry, arg)?);
            set.insert(entry.id.clone(), index);
        }
        let with_file = (config_file, set);
        matches = parse(&command, &words, Some(&with_file))?;
        file = Some(with_file);
    }
    let config = Config::from_arg_matches(&matches)?;
    Ok(Loaded {
        config,
        command,
        matches,
        file,
    })
}

impl Loaded {
    /// Where the setting of `arg` came from.
    pub fn source(&self, id: &str) -> Source {
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => match &self.file {
                Some((file, set)) => match set.get(id) {
                    Some(&index) => file.source(&file.entries[index]),
                    None => Source::CommandLine,
                },
                None => Source::CommandLine,
            },
            Some(ValueSource::EnvVariable) => find(&self.command, id)
                .and_then(Arg::get_env)
                .map_or(Source::Default, |var| {
                    Source::Env(var.to_string_lossy().into_owned())
                }),
            _ => Source::Default,
        }
    }

    /// [`Config::validate`], with where the faulty setting came from. The setting is the flag
    /// the error's message names first (every [`super::ConfigError`] message does).
    pub fn validate(&self) -> Result<(), LoadError> {
        self.config.validate().map_err(|error| {
            let message = error.to_string();
            let origin = message
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .find_map(|word| word.strip_prefix("--"))
                .and_then(|long| {
                    self.command
                        .get_arguments()
                        .find(|a| a.get_long() == Some(long))
                })
                .map_or(Source::Default, |arg| self.source(arg.get_id().as_str()));
            LoadError::Setting { error, origin }
        })
    }
}

/// The arg `id` of `command`.
fn find<'c>(command: &'c Command, id: &str) -> Option<&'c Arg> {
    command.get_arguments().find(|a| a.get_id().as_str() == id)
}

/// Parses `words` (and the environment); a refused value is named with its source: the file
/// when `file` set it, else the environment when the command line alone parses, else the
/// command line.
fn parse(
    command: &Command,
    words: &[OsString],
    file: Option<&(ConfigFile, HashMap<String, usize>)>,
) -> Result<ArgMatches, LoadError> {
    let err = match command.clone().try_get_matches_from(words) {
        Ok(matches) => return Ok(matches),
        Err(err) => err,
    };
    let Some((arg, value, reason)) = refused_value(&err, command) else {
        return Err(err.into());
    };
    let id = arg.get_id().as_str();
    let origin = match file.and_then(|(f, set)| set.get(id).map(|&i| f.source(&f.entries[i]))) {
        Some(origin) => origin,
        None => match arg.get_env() {
            Some(var) if without_env(command).try_get_matches_from(words).is_ok() => {
                Source::Env(var.to_string_lossy().into_owned())
            }
            _ => Source::CommandLine,
        },
    };
    Err(LoadError::Invalid {
        flag: arg.get_long().unwrap_or(id).to_owned(),
        value: if file::is_secret(arg) {
            "(secret)".to_owned()
        } else {
            format!("{value:?}")
        },
        origin,
        reason,
    })
}

/// `command` reading no environment variable.
fn without_env(command: &Command) -> Command {
    command.clone().mut_args(|arg| arg.env(None::<&str>))
}

/// The arg, value and reason of a value clap refused.
fn refused_value<'c>(err: &clap::Error, command: &'c Command) -> Option<(&'c Arg, String, String)> {
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    // "--shards <SHARDS>": the flag, then its value name.
    let Some(ContextValue::String(named)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = named.split([' ', '=']).next()?.strip_prefix("--")?;
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?;
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.clone(),
        _ => String::new(),
    };
    let reason = match (err.kind(), err.get(ContextKind::ValidValue)) {
        (ErrorKind::InvalidValue, Some(ContextValue::Strings(valid))) => {
            format!("expected one of {}", valid.join(", "))
        }
        _ => std::error::Error::source(err)
            .map_or_else(|| "not a valid value".to_owned(), ToString::to_string),
    };
    Some((arg, value, reason))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::config::ConfigError;

    /// A file in the system's temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let path = std::env::temp_dir().join(format!("shardio-{}-{name}", std::process::id()));
            std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .unwrap();
            TempFile(path)
        }

        fn arg(&self) -> String {
            format!("--config={}", self.0.display())
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    // These tests set no environment variable (the process's environment is shared by the
    // tests); tests/it/config.rs drives the binary with its own environment for that.

    #[test]
    fn the_command_line_wins_over_the_file_which_wins_over_the_defaults() {
        let file = TempFile::new(
            "precedence.toml",
            "ping-interval = 1000\nmax_payload = 2000\nnamespace = [\"/a\"]\nno-pin = true\n",
        );
        let loaded = load(["shardio", &file.arg(), "--ping-interval", "7"]).unwrap();
        let c = &loaded.config;
        assert_eq!(c.ping_interval, 7);
        assert_eq!(loaded.source("ping_interval"), Source::CommandLine);
        assert_eq!(c.max_payload, 2000);
        assert!(
            matches!(loaded.source("max_payload"), Source::File { key, .. } if key == "max_payload")
        );
        assert_eq!(c.namespaces, ["/a"]);
        assert!(c.runtime.no_pin);
        assert_eq!(c.ping_timeout, 20_000);
        assert_eq!(loaded.source("ping_timeout"), Source::Default);
    }

    #[test]
    fn a_refused_value_names_its_flag_value_and_source() {
        let file = TempFile::new("invalid.toml", "shards = \"many\"\n");
        let err = load(["shardio", &file.arg()]).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(&err, LoadError::Invalid { flag, origin: Source::File { .. }, .. } if flag == "shards"),
            "{message}"
        );
        assert!(
            message.contains("\"many\"") && message.contains("invalid.toml"),
            "{message}"
        );
        let err = load(["shardio", "--ping-timeout", "soon"]).unwrap_err();
        assert!(
            matches!(
                &err,
                LoadError::Invalid {
                    origin: Source::CommandLine,
                    ..
                }
            ),
            "{err}"
        );
        let err = load(["shardio", "--log-format", "xml"]).unwrap_err();
        assert!(
            err.to_string().contains("expected one of text, json"),
            "{err}"
        );
    }

    #[test]
    fn a_setting_that_cannot_run_names_its_source() {
        let file = TempFile::new("zero.toml", "ping-timeout = 0\n");
        let loaded = load(["shardio", &file.arg()]).unwrap();
        let err = loaded.validate().unwrap_err();
        assert!(
            matches!(
                &err,
                LoadError::Setting {
                    error: ConfigError::Zero("ping-timeout"),
                    origin: Source::File { .. }
                }
            ),
            "{err}"
        );
        let loaded = load(["shardio", "--path", "x"]).unwrap();
        assert!(matches!(
            loaded.validate(),
            Err(LoadError::Setting {
                origin: Source::CommandLine,
                ..
            })
        ));
    }

    #[test]
    fn help_and_unknown_flags_are_clap_s() {
        let err = load(["shardio", "--help"]).unwrap_err();
        assert_eq!(err.exit_code(), 0);
        let err = load(["shardio", "--no-such-flag"]).unwrap_err();
        assert!(matches!(err, LoadError::Cli(_)));
        assert_eq!(err.exit_code(), 2);
        let err = load(["shardio", "--config", "/nonexistent/shardio.toml"]).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }), "{err}");
    }
}
