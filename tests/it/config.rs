//! The configuration file and the logs, through the real binary: precedence (flags over
//! `SHARDIO_*` over the file over the defaults), errors that name the key, its value and its
//! source, `--print-config` and its masked secrets, `deploy/shardio.toml` complete and valid,
//! and `--log-format json` with each session's `sid` and `shard`.
//!
//! Every run of the binary gets its environment from the test alone (`shardio_command` drops
//! the test process's own `SHARDIO_*` variables).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use clap::CommandFactory as _;

use crate::common::polling::PollingClient;
use crate::common::process::{shardio_command, ShardioProcess};
use crate::common::{wait_child, wait_until, WsClient};

/// A configuration file in the system's temporary directory, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("shardio-it-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write the configuration file");
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An environment variable and its value.
type Env<'a> = (&'a str, &'a str);

/// Runs `shardio <args>` with `env`, to completion (it must exit within 20 s: none of these
/// runs may start serving).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = shardio_command()
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardio");
    let exited = wait_child(&mut child, Duration::from_secs(20));
    assert!(
        exited.is_some(),
        "shardio {args:?} did not exit: it must not start"
    );
    child.wait_with_output().expect("shardio's output")
}

/// `--print-config` with `args` and `env`: the printed text, which must exit 0.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(&[&["--print-config"], args].concat(), env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "--print-config failed: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The line of `key` in a `--print-config` output.
fn line<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{printed}"))
}

/// Runs `args` with `env`, which must fail; returns stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} {env:?} must not start");
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    stderr
}

#[test]
fn flags_win_over_the_environment_over_the_file_over_the_defaults() {
    let file = ConfigFile::new(
        "precedence.toml",
        r#"
            ping-interval = 1000          # also in the environment and on the command line
            shards = 3                    # also in the environment
            max_payload = 5000            # only here, with an underscore
            namespace = ["/a", "/b"]      # an array: a repeated flag
            no-pin = true                 # a switch
            client-publish = false        # a flag that takes on|off
        "#,
    );
    let env = [
        ("SHARDIO_CONFIG", file.path()),
        ("SHARDIO_PING_INTERVAL", "2000"),
        ("SHARDIO_SHARDS", "2"),
    ];
    let printed = print_config(&["--ping-interval", "3000"], &env);
    let table: toml::Table = printed.parse().expect("--print-config prints TOML");
    let int = |key: &str| table[key].as_integer().unwrap_or_else(|| panic!("{key}"));
    assert_eq!(int("ping-interval"), 3000, "a flag wins over all");
    assert!(line(&printed, "ping-interval").ends_with("# from the command line"));
    assert_eq!(int("shards"), 2, "the environment wins over the file");
    assert!(line(&printed, "shards").ends_with("# from the environment variable SHARDIO_SHARDS"));
    assert_eq!(int("max-payload"), 5000, "the file wins over the default");
    assert!(line(&printed, "max-payload")
        .contains(&format!("# from key \"max_payload\" of {}", file.path())));
    assert_eq!(table["namespace"].as_array().unwrap().len(), 2);
    assert_eq!(table["no-pin"].as_bool(), Some(true));
    assert_eq!(table["client-publish"].as_bool(), Some(false));
    assert_eq!(int("ping-timeout"), 20_000, "the default");
    assert_eq!(line(&printed, "ping-timeout"), "ping-timeout = 20000");

    // The environment wins over the file for an array and a switch-valued flag too.
    let env = [
        ("SHARDIO_CONFIG", file.path()),
        ("SHARDIO_NAMESPACES", "/c"),
        ("SHARDIO_CLIENT_PUBLISH", "on"),
    ];
    let table: toml::Table = print_config(&[], &env).parse().unwrap();
    assert_eq!(table["namespace"].as_array().unwrap().len(), 1);
    assert_eq!(table["namespace"][0].as_str(), Some("/c"));
    assert_eq!(table["client-publish"].as_str(), Some("on"));
    assert_eq!(table["shards"].as_integer(), Some(3), "the file's, now");

    // And a flag over the file, given with --config on the command line.
    let table: toml::Table = print_config(&["--config", file.path(), "--max-payload", "7"], &[])
        .parse()
        .unwrap();
    assert_eq!(table["max-payload"].as_integer(), Some(7));
    assert_eq!(table["ping-interval"].as_integer(), Some(1000));
}

#[test]
fn an_unknown_key_stops_startup_naming_the_key_and_the_file() {
    let file = ConfigFile::new("unknown.toml", "listen = \"127.0.0.1:0\"\nshard = 2\n");
    let stderr = refused(&["--config", file.path()], &[]);
    assert!(stderr.contains("unknown key \"shard\""), "{stderr}");
    assert!(stderr.contains(file.path()), "{stderr}");
    let file = ConfigFile::new("not-toml.toml", "listen = \n");
    let stderr = refused(&["--config", file.path()], &[]);
    assert!(
        stderr.contains("not valid TOML") && stderr.contains("line 1"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_value_stops_startup_naming_key_value_and_source() {
    let listen = ["--listen", "127.0.0.1:0"];
    let file = ConfigFile::new("invalid.toml", "shards = \"four\"\n");
    let in_file = format!("key \"shards\" of {}", file.path());
    // One that parses but cannot run (Config::validate) names its source too.
    let zero = ConfigFile::new("zero.toml", "ping-timeout = 0\n");
    let zero_in_file = format!("key \"ping-timeout\" of {}", zero.path());
    let env = [("SHARDIO_PING_TIMEOUT", "soon")];
    let cases: [(&[&str], &[Env], [&str; 2]); 4] = [
        (
            &[&listen[..], &["--config", file.path()]].concat(),
            &[],
            ["invalid value \"four\" for --shards", &in_file],
        ),
        (
            &listen,
            &env,
            [
                "invalid value \"soon\" for --ping-timeout",
                "(from the environment variable SHARDIO_PING_TIMEOUT)",
            ],
        ),
        (
            &[&listen[..], &["--log-format", "xml"]].concat(),
            &[],
            [
                "invalid value \"xml\" for --log-format (from the command line)",
                "expected one of text, json",
            ],
        ),
        (
            &[&listen[..], &["--config", zero.path()]].concat(),
            &[],
            ["--ping-timeout must be greater than zero", &zero_in_file],
        ),
    ];
    for (args, env, expected) in cases {
        let stderr = refused(args, env);
        for what in expected {
            assert!(
                stderr.contains(what),
                "{args:?} {env:?}: {what:?} not in {stderr}"
            );
        }
    }
}

#[test]
fn print_config_masks_secrets_and_does_not_start() {
    let secret = "a-jwt-secret-from-the-environment";
    let key = "an-api-key-from-the-config-file";
    let file = ConfigFile::new("secrets.toml", &format!("api_key = [\"{key}\"]\n"));
    let printed = print_config(
        &["--config", file.path(), "--listen", "127.0.0.1:1"],
        &[("SHARDIO_JWT_SECRET", secret)],
    );
    assert!(
        !printed.contains(secret) && !printed.contains(key),
        "{printed}"
    );
    assert!(line(&printed, "jwt-secret").starts_with("jwt-secret = [\"********\"]"));
    assert!(line(&printed, "api-key").starts_with("api-key = [\"********\"]"));
    assert!(line(&printed, "listen").starts_with("listen = \"127.0.0.1:1\""));
}

#[test]
fn help_shows_the_defaults() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for shown in [
        "[default: 0.0.0.0:3000]",
        "[default: 25000]",
        "[default: text]",
        "Default: the number of available cores",
        "Default: the host name",
    ] {
        assert!(help.contains(shown), "{shown} not in --help");
    }
}

/// Every setting: the long flags of the command but those that say how to read the settings.
fn settings() -> Vec<(String, Option<String>)> {
    shardio::Config::command()
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?.to_owned(), a.get_env())))
        .filter(|(long, _)| !["config", "print-config", "help", "version"].contains(&long.as_str()))
        .map(|(long, env)| (long, env.map(|e| e.to_string_lossy().into_owned())))
        .collect()
}

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn deploy_example_names_every_setting_and_sets_the_defaults() {
    let example = repo_file("deploy/shardio.toml");
    for (long, _) in settings() {
        assert!(
            example
                .lines()
                .any(|l| l.starts_with(&format!("{long} = "))
                    || l.starts_with(&format!("# {long} = "))),
            "deploy/shardio.toml has no `{long} = ` (nor `# {long} = `) line"
        );
    }
    // Every key is known and every value valid; and copied as it is, it changes nothing.
    let path = format!("{}/deploy/shardio.toml", env!("CARGO_MANIFEST_DIR"));
    let with = print_config(&["--config", &path], &[]);
    let without = print_config(&[], &[]);
    let values = |printed: &str| -> Vec<String> {
        printed
            .lines()
            .map(|l| l.split("  # from ").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(values(&with), values(&without));
}

#[test]
fn every_setting_has_an_environment_variable_and_a_readme_row() {
    let readme = repo_file("README.md");
    for (long, env) in settings() {
        let env = env.unwrap_or_else(|| panic!("--{long} has no SHARDIO_* variable"));
        assert!(env.starts_with("SHARDIO_"), "--{long}: {env}");
        assert!(
            readme.contains(&format!("| `--{long}")) && readme.contains(&format!("`{env}`")),
            "README's Options table has no row for --{long} ({env})"
        );
    }
}

#[test]
fn json_logs_carry_each_session_s_sid_and_shard() {
    let server = ShardioProcess::start_with_env(
        &["--shards", "2", "--log-format", "json"],
        &[("RUST_LOG", "info,shardio::engineio=debug")],
    );
    // A polling session, closed by its client; a WebSocket session, closed the same way.
    let (polling, _) = PollingClient::open(server.addr, "/socket.io/");
    polling.send("1");
    let (mut ws, open) = WsClient::open(server.addr, "/socket.io/");
    let ws_sid = open["sid"].as_str().expect("sid").to_owned();
    ws.send_text("1");
    let closed = |sid: &str| {
        server.count_lines(
            &format!("\"sid\":\"{sid}\""),
            std::time::Instant::now() - Duration::from_secs(3600),
        ) > 0
    };
    wait_until("both sessions' close lines", || {
        closed(&polling.sid) && closed(&ws_sid)
    });

    let lines = server.lines();
    let mut seen = Vec::new();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"]["message"].is_string(),
            "{line}"
        );
        let span = &value["span"];
        if let Some(sid) = span["sid"].as_str() {
            assert_eq!(span["name"], "session", "{line}");
            let owner = shardio::engineio::Sid::parse(sid).expect("a sid").shard();
            assert_eq!(span["shard"].as_u64(), Some(owner as u64), "{line}");
            seen.push(sid.to_owned());
        }
    }
    for sid in [&polling.sid, &ws_sid] {
        assert!(
            seen.contains(sid),
            "no line of session {sid} in\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn rust_log_span_directives_still_filter_by_session() {
    // Span directives take the EnvFilter path (plain ones a Targets filter): debug lines inside
    // a session's span only, in the default text format.
    let server = ShardioProcess::start_with_env(
        &["--shards", "2"],
        &[("RUST_LOG", "warn,shardio::server=info,[session]=debug")],
    );
    let (polling, _) = PollingClient::open(server.addr, "/socket.io/");
    polling.send("1");
    let line = format!("session{{sid={} shard={}}}", polling.sid, polling.owner());
    server.wait_for_line(&line, crate::common::WAIT);
    assert!(
        server
            .lines()
            .iter()
            .all(|l| !l.contains("DEBUG") || l.contains("session{")),
        "debug lines outside a session's span: {:?}",
        server.lines()
    );
}
