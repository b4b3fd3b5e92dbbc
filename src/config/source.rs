//! Where a setting comes from, and why a configuration does not load.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use super::ConfigError;

/// Where the value of one setting comes from, highest precedence first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A flag on the command line.
    CommandLine,
    /// A `SHARDIO_*` environment variable (its name).
    Env(String),
    /// A key of the configuration file.
    File {
        /// The file, as `--config` names it.
        path: PathBuf,
        /// The key as the file writes it (`max_payload` or `max-payload`).
        key: String,
    },
    /// Nothing set it: the default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::CommandLine => f.write_str("the command line"),
            Source::Env(var) => write!(f, "the environment variable {var}"),
            Source::File { path, key } => write!(f, "key {key:?} of {}", path.display()),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// Why the configuration did not load; the message names the setting and where it came from.
#[derive(Debug, Error)]
pub enum LoadError {
    /// What clap answers itself: `--help`, `--version`, an unknown flag, a flag without its
    /// value. [`clap::Error::exit`] prints it as clap does.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// The file named by `--config` cannot be read.
    #[error("cannot read the configuration file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{} is not valid TOML: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// A key that names no flag.
    #[error("unknown key {key:?} in {}: keys are the long flags without `--` (see shardio --help)", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as the file writes it.
        key: String,
    },
    /// The same flag twice in one file (`max_payload` and `max-payload`).
    #[error("key {key:?} in {} sets the same flag as {earlier:?}", path.display())]
    DuplicateKey {
        /// The file.
        path: PathBuf,
        /// The second key.
        key: String,
        /// The first.
        earlier: String,
    },
    /// A value that does not parse (or has the wrong shape) for its flag.
    #[error("invalid value {value} for --{flag} (from {origin}): {reason}")]
    Invalid {
        /// The flag's long name.
        flag: String,
        /// The value, quoted (masked for a secret).
        value: String,
        /// Where it came from.
        origin: Source,
        /// Why it is refused.
        reason: String,
    },
    /// A setting that parses but cannot run (`Config::validate`).
    #[error("{error} (from {origin})")]
    Setting {
        /// What is wrong.
        error: ConfigError,
        /// Where the setting came from.
        origin: Source,
    },
}

impl LoadError {
    /// The exit status for this error: clap's own for what clap answered (0 for `--help` and
    /// `--version`), else 2, a usage error.
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadError::Cli(e) => e.exit_code(),
            _ => 2,
        }
    }
}
