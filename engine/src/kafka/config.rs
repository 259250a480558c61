//! Where the real-Kafka transport's librdkafka settings come from.
//!
//! # Sources, later ones win
//!
//! 1. Eddyline's defaults (a connection timeout, no auto-created topics).
//! 2. A Java-style properties file named by `EDDY_KAFKA_CONFIG`
//!    (`key=value` or `key: value` lines, `#`/`!` comments, `\` line
//!    continuations): any librdkafka property, e.g.
//!    `security.protocol=SASL_SSL`, `sasl.mechanism=SCRAM-SHA-256`,
//!    `sasl.username=...`, `sasl.password=...`, `ssl.ca.location=...`.
//! 3. Environment variables `EDDY_KAFKA_<NAME>`: the property whose name is
//!    `<NAME>` in lower case with `_` read as `.` and `__` as `_` (the
//!    convention of Kafka's container images): `EDDY_KAFKA_SASL_PASSWORD`
//!    sets `sasl.password`. These names are Eddyline's own, not properties:
//!    - `EDDY_KAFKA_CONFIG`: the properties file;
//!    - `EDDY_KAFKA_BOOTSTRAP`: the bootstrap address when none is given;
//!    - `EDDY_KAFKA_TIMEOUT_MS`: how long connecting, metadata and admin calls
//!      may take before they fail (default 10000);
//!    - `EDDY_KAFKA_LOG`: `1` prints librdkafka's warnings and errors
//!      (with secrets redacted) to stderr;
//!    - `EDDY_KAFKA_BOOTSTRAP_SASL` and every `EDDY_KAFKA_TEST_*`: test setup.
//! 4. The bootstrap address given on the command line (`--bootstrap`).
//!
//! Credentials therefore never need to be on the command line, where other
//! users of the machine could read them.
//!
//! # What cannot be overridden
//!
//! Properties that carry the seam's guarantees (idempotence, acks=all, manual
//! offset commits, the isolation level, the eager range assignor, Kafka's
//! murmur2 partitioner, ...) or that come from [`ConsumerConfig`] /
//! [`ProducerConfig`] are set by the transport; a source that sets one is
//! rejected with an error naming the property and where it came from.
//!
//! # Secrets
//!
//! The value of every property whose name contains `password`, `secret`,
//! `jaas` or `oauthbearer.config`, or that holds a private key, is a secret:
//! `Debug` prints it as `[redacted]`, and every error message and log line the
//! transport produces has it replaced by `[redacted]`.
//!
//! [`ConsumerConfig`]: crate::transport::ConsumerConfig
//! [`ProducerConfig`]: crate::transport::ProducerConfig

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use rdkafka::ClientConfig;

use crate::transport::{ErrorCode, ErrorKind, TransportError, TransportResult};

pub const ENV_CONFIG_FILE: &str = "EDDY_KAFKA_CONFIG";
pub const ENV_BOOTSTRAP: &str = "EDDY_KAFKA_BOOTSTRAP";
pub const ENV_BOOTSTRAP_SASL: &str = "EDDY_KAFKA_BOOTSTRAP_SASL";
pub const ENV_TIMEOUT_MS: &str = "EDDY_KAFKA_TIMEOUT_MS";
pub const ENV_LOG: &str = "EDDY_KAFKA_LOG";
const ENV_PREFIX: &str = "EDDY_KAFKA_";
const ENV_TEST_PREFIX: &str = "EDDY_KAFKA_TEST_";

/// The default bound on connecting, metadata and admin calls.
pub const TIMEOUT_MS_DEFAULT: u32 = 10_000;

/// Properties the transport sets itself (see the module doc).
const PROTECTED: &[&str] = &[
    "group.id",
    "group.instance.id",
    "group.protocol",
    "client.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "isolation.level",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "enable.partition.eof",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
    "transaction.timeout.ms",
    "partitioner",
    "linger.ms",
    "queue.buffering.max.ms",
    "request.timeout.ms",
    "delivery.timeout.ms",
    "message.timeout.ms",
];

fn config_error(message: impl Into<String>) -> TransportError {
    TransportError::new(
        ErrorKind::Fatal,
        ErrorCode::Other(RDKAFKA_INVALID_ARG),
        message,
    )
}

/// librdkafka's `_INVALID_ARG`: the code of configuration errors.
const RDKAFKA_INVALID_ARG: i32 = -186;

/// Whether a property's value must never be shown.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("jaas")
        || key.contains("oauthbearer.config")
        || key == "ssl.key.pem"
        || key == "ssl_key"
        || key == "ssl.keystore.pem"
}

/// One property and where it was set (for error messages).
#[derive(Clone)]
struct Property {
    value: String,
    origin: String,
}

/// Replaces secret values in text; shared by every client of a transport.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// How to reach a Kafka cluster: the bootstrap address, librdkafka
/// properties (see the module doc) and the bound on connecting.
#[derive(Clone)]
pub struct KafkaConfig {
    bootstrap: String,
    properties: BTreeMap<String, Property>,
    timeout_ms: u32,
    log_to_stderr: bool,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut properties = f.debug_map();
        for (key, property) in &self.properties {
            if is_secret_property(key) {
                properties.entry(key, &"[redacted]");
            } else {
                properties.entry(key, &property.value);
            }
        }
        properties.finish()?;
        write!(
            f,
            " bootstrap={} timeout_ms={}",
            self.bootstrap, self.timeout_ms
        )
    }
}

impl KafkaConfig {
    /// A plaintext connection to `bootstrap` (`host:port[,host:port...]`).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            properties: BTreeMap::new(),
            timeout_ms: TIMEOUT_MS_DEFAULT,
            log_to_stderr: false,
        }
    }

    /// The configuration from `EDDY_KAFKA_CONFIG` and `EDDY_KAFKA_*` (see the
    /// module doc) among `vars`; `bootstrap`, if given, wins over both. The
    /// library reads no environment itself: a command passes
    /// `std::env::vars()`, a test the variables it wants.
    pub fn from_sources(
        bootstrap: Option<&str>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> TransportResult<Self> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        let mut config = Self::new(String::new());
        if let Some(path) = vars.get(ENV_CONFIG_FILE).filter(|p| !p.is_empty()) {
            config.load_properties_file(Path::new(path))?;
        }
        for (name, value) in &vars {
            if [
                ENV_CONFIG_FILE,
                ENV_BOOTSTRAP,
                ENV_BOOTSTRAP_SASL,
                ENV_TIMEOUT_MS,
                ENV_LOG,
            ]
            .contains(&name.as_str())
                || name.starts_with(ENV_TEST_PREFIX)
            {
                continue;
            }
            let key = property_name_of_env(&name[ENV_PREFIX.len()..]);
            if key.is_empty() {
                continue;
            }
            config.insert(&key, value, name.clone())?;
        }
        if let Some(timeout) = vars.get(ENV_TIMEOUT_MS) {
            config.timeout_ms = timeout
                .parse::<u32>()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| {
                    config_error(format!(
                        "{ENV_TIMEOUT_MS}={timeout:?} is not a positive number of milliseconds"
                    ))
                })?;
        }
        config.log_to_stderr = vars.get(ENV_LOG).is_some_and(|v| v == "1");
        let from_properties = config
            .properties
            .remove("bootstrap.servers")
            .map(|p| p.value);
        config.bootstrap = bootstrap
            .map(str::to_string)
            .or_else(|| vars.get(ENV_BOOTSTRAP).cloned())
            .or(from_properties)
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| {
                config_error(format!(
                    "no Kafka bootstrap address: pass --bootstrap HOST:PORT, or set {ENV_BOOTSTRAP} or bootstrap.servers in {ENV_CONFIG_FILE}"
                ))
            })?;
        Ok(config)
    }

    /// Reads a properties file into this configuration (later files win).
    pub fn load_properties_file(&mut self, path: &Path) -> TransportResult<()> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            config_error(format!(
                "cannot read Kafka properties file {}: {error}",
                path.display()
            ))
        })?;
        for (line_number, key, value) in parse_properties(&text).map_err(|(line, reason)| {
            config_error(format!("{}:{line}: {reason}", path.display()))
        })? {
            self.insert(&key, &value, format!("{}:{line_number}", path.display()))?;
        }
        Ok(())
    }

    /// Sets one librdkafka property.
    pub fn set(&mut self, key: &str, value: &str) -> TransportResult<&mut Self> {
        self.insert(key, value, "KafkaConfig::set".to_string())?;
        Ok(self)
    }

    /// Builder form of [`KafkaConfig::set`].
    pub fn with(mut self, key: &str, value: &str) -> TransportResult<Self> {
        self.set(key, value)?;
        Ok(self)
    }

    pub fn with_timeout_ms(mut self, timeout_ms: u32) -> Self {
        assert!(timeout_ms > 0, "a timeout of 0 ms cannot succeed");
        self.timeout_ms = timeout_ms;
        self
    }

    pub fn with_bootstrap(mut self, bootstrap: impl Into<String>) -> Self {
        self.bootstrap = bootstrap.into();
        self
    }

    fn insert(&mut self, key: &str, value: &str, origin: String) -> TransportResult<()> {
        let key = key.trim();
        if key.is_empty() {
            return Err(config_error(format!("{origin}: empty property name")));
        }
        if PROTECTED.contains(&key) {
            return Err(config_error(format!(
                "property '{key}' (from {origin}) is set by Eddyline's Kafka transport and cannot be overridden"
            )));
        }
        self.properties.insert(
            key.to_string(),
            Property {
                value: value.to_string(),
                origin,
            },
        );
        Ok(())
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms
    }

    pub(crate) fn log_to_stderr(&self) -> bool {
        self.log_to_stderr
    }

    /// The value of a property, `None` if unset. Secrets are returned too:
    /// never print them.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(|p| p.value.as_str())
    }

    /// Where a property was set (`file:line` or the variable's name).
    pub fn origin(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(|p| p.origin.as_str())
    }

    /// The redactor for this configuration's secrets.
    pub fn redactor(&self) -> Redactor {
        let mut secrets: Vec<String> = self
            .properties
            .iter()
            .filter(|(key, p)| is_secret_property(key) && !p.value.is_empty())
            .map(|(_, p)| p.value.clone())
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The librdkafka configuration shared by every client: the user's
    /// properties, then the bootstrap address and Eddyline's defaults.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        // Defaults a source may change.
        config.set(
            "socket.connection.setup.timeout.ms",
            self.timeout_ms.to_string(),
        );
        config.set("allow.auto.create.topics", "false");
        config.set(
            "topic.metadata.propagation.max.ms",
            self.timeout_ms.to_string(),
        );
        config.set("log.connection.close", "false");
        for (key, property) in &self.properties {
            config.set(key, &property.value);
        }
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Names the source of a property for a librdkafka configuration error,
    /// without its value.
    pub(crate) fn describe_property(&self, key: &str) -> String {
        match self.origin(key) {
            Some(origin) => format!("property '{key}' (from {origin})"),
            None => format!("property '{key}'"),
        }
    }
}

/// `SASL_PASSWORD` -> `sasl.password`; `A__B` -> `a_b`.
fn property_name_of_env(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '_' {
            if chars.peek() == Some(&'_') {
                chars.next();
                out.push('_');
            } else {
                out.push('.');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Parses Java-style properties: `(line, key, value)` in file order, or the
/// first bad line with the reason.
#[allow(clippy::type_complexity)]
fn parse_properties(text: &str) -> Result<Vec<(usize, String, String)>, (usize, String)> {
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let line_number = index + 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines (an odd number of trailing backslashes).
        let mut logical = trimmed.to_string();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        let key = unescape(&key);
        if key.is_empty() {
            return Err((line_number, "a property line without a name".to_string()));
        }
        entries.push((line_number, key, unescape(&value)));
    }
    Ok(entries)
}

fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                key.push(c);
                if let Some(next) = chars.next() {
                    key.push(next);
                }
            }
            '=' | ':' => {
                let value: String = chars.collect();
                return (key.trim_end().to_string(), value.trim_start().to_string());
            }
            c if c.is_whitespace() => {
                // `key value`, or `key = value`.
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                return (key, rest.trim_start().to_string());
            }
            c => key.push(c),
        }
    }
    (key, String::new())
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    mod properties_files {
        use super::*;

        #[test]
        fn keys_values_comments_and_continuations_parse_like_java() {
            let text = "# comment\n! also a comment\n\nsecurity.protocol=SASL_SSL\n  sasl.mechanism : SCRAM-SHA-256\nsasl.username eddy\nsasl.jaas.config=a \\\n    b\nkey\\=with\\:escapes=v\\tw\nempty=\n";
            let entries = parse_properties(text).unwrap();
            let pairs: Vec<(&str, &str)> = entries
                .iter()
                .map(|(_, k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                pairs,
                vec![
                    ("security.protocol", "SASL_SSL"),
                    ("sasl.mechanism", "SCRAM-SHA-256"),
                    ("sasl.username", "eddy"),
                    ("sasl.jaas.config", "a b"),
                    ("key=with:escapes", "v\tw"),
                    ("empty", ""),
                ]
            );
            assert_eq!(entries[0].0, 4, "line numbers are 1-based file lines");
        }

        #[test]
        fn a_line_without_a_name_is_an_error_with_its_line_number() {
            let error = parse_properties("a=1\n=2\n").unwrap_err();
            assert_eq!(error.0, 2);
        }

        #[test]
        fn a_missing_file_is_a_one_line_error_naming_it() {
            let error = KafkaConfig::from_sources(
                Some("127.0.0.1:9092"),
                vars(&[(ENV_CONFIG_FILE, "/nonexistent/eddy.properties")]),
            )
            .unwrap_err();
            assert!(error.message.contains("/nonexistent/eddy.properties"));
            assert!(!error.to_string().contains('\n'));
        }
    }

    mod environment {
        use super::*;

        #[test]
        fn eddy_kafka_variables_become_librdkafka_properties() {
            let config = KafkaConfig::from_sources(
                None,
                vars(&[
                    (ENV_BOOTSTRAP, "127.0.0.1:1234"),
                    ("EDDY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                    ("EDDY_KAFKA_SASL_PASSWORD", "hunter2"),
                    ("EDDY_KAFKA_SOME__ODD_NAME", "x"),
                    ("EDDY_KAFKA_TEST_SOMETHING", "ignored"),
                    (ENV_BOOTSTRAP_SASL, "127.0.0.1:9"),
                    (ENV_TIMEOUT_MS, "2500"),
                    ("OTHER_VARIABLE", "ignored"),
                ]),
            )
            .unwrap();
            assert_eq!(config.bootstrap(), "127.0.0.1:1234");
            assert_eq!(config.property("security.protocol"), Some("SASL_PLAINTEXT"));
            assert_eq!(config.property("sasl.password"), Some("hunter2"));
            assert_eq!(config.property("some_odd.name"), Some("x"));
            assert_eq!(config.property("test.something"), None);
            assert_eq!(config.property("bootstrap.sasl"), None);
            assert_eq!(config.timeout_ms(), 2500);
            assert_eq!(
                config.origin("sasl.password"),
                Some("EDDY_KAFKA_SASL_PASSWORD")
            );
        }

        #[test]
        fn the_environment_overrides_the_file_and_the_argument_overrides_both() {
            let dir =
                std::env::temp_dir().join(format!("eddy-kafka-config-test-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("client.properties");
            std::fs::write(
                &file,
                "bootstrap.servers=file:1\nsasl.username=from-file\nsocket.keepalive.enable=true\n",
            )
            .unwrap();
            let file_name = file.display().to_string();
            let config = KafkaConfig::from_sources(
                None,
                vars(&[
                    (ENV_CONFIG_FILE, &file_name),
                    ("EDDY_KAFKA_SASL_USERNAME", "from-env"),
                ]),
            )
            .unwrap();
            assert_eq!(config.bootstrap(), "file:1");
            assert_eq!(config.property("sasl.username"), Some("from-env"));
            assert_eq!(config.property("socket.keepalive.enable"), Some("true"));
            assert_eq!(
                config.origin("socket.keepalive.enable"),
                Some(&*format!("{file_name}:3"))
            );
            let config = KafkaConfig::from_sources(
                Some("arg:2"),
                vars(&[(ENV_CONFIG_FILE, &file_name), (ENV_BOOTSTRAP, "env:3")]),
            )
            .unwrap();
            assert_eq!(config.bootstrap(), "arg:2");
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn no_bootstrap_anywhere_is_an_error_that_says_where_to_set_it() {
            let error = KafkaConfig::from_sources(None, vars(&[])).unwrap_err();
            assert!(error.message.contains(ENV_BOOTSTRAP), "{error}");
            assert!(error.message.contains("--bootstrap"), "{error}");
        }

        #[test]
        fn a_bad_timeout_is_rejected() {
            let error = KafkaConfig::from_sources(Some("a:1"), vars(&[(ENV_TIMEOUT_MS, "soon")]))
                .unwrap_err();
            assert!(error.message.contains(ENV_TIMEOUT_MS), "{error}");
        }

        #[test]
        fn a_property_that_carries_a_guarantee_cannot_be_overridden() {
            let error = KafkaConfig::from_sources(
                Some("a:1"),
                vars(&[("EDDY_KAFKA_ENABLE_AUTO_COMMIT", "true")]),
            )
            .unwrap_err();
            assert!(error.message.contains("enable.auto.commit"), "{error}");
            assert!(
                error.message.contains("EDDY_KAFKA_ENABLE_AUTO_COMMIT"),
                "{error}"
            );
            let mut config = KafkaConfig::new("a:1");
            assert!(config.set("acks", "1").is_err());
            assert!(config.set("isolation.level", "read_uncommitted").is_err());
        }
    }

    mod secrets {
        use super::*;

        #[test]
        fn debug_output_never_shows_a_secret() {
            let config = KafkaConfig::new("127.0.0.1:1")
                .with("sasl.username", "eddy")
                .unwrap()
                .with("sasl.password", "canary-password-1")
                .unwrap()
                .with(
                    "sasl.jaas.config",
                    "org.Foo required password=\"canary-jaas-2\";",
                )
                .unwrap()
                .with("ssl.key.password", "canary-key-3")
                .unwrap();
            let shown = format!("{config:?}");
            for canary in ["canary-password-1", "canary-jaas-2", "canary-key-3"] {
                assert!(!shown.contains(canary), "{shown}");
            }
            assert!(
                shown.contains("eddy"),
                "non-secret values are shown: {shown}"
            );
        }

        #[test]
        fn the_redactor_replaces_every_secret_value_in_text() {
            let config = KafkaConfig::new("127.0.0.1:1")
                .with("sasl.password", "pw")
                .unwrap()
                .with("sasl.oauthbearer.client.secret", "pwpw-long")
                .unwrap();
            let redactor = config.redactor();
            assert_eq!(
                redactor.redact("login pw failed, token pwpw-long"),
                "login [redacted] failed, token [redacted]"
            );
            assert_eq!(redactor.redact("nothing secret"), "nothing secret");
        }

        #[test]
        fn secret_property_names_are_recognised() {
            for key in [
                "sasl.password",
                "ssl.key.password",
                "ssl.keystore.password",
                "sasl.jaas.config",
                "sasl.oauthbearer.client.secret",
                "sasl.oauthbearer.config",
                "ssl.key.pem",
            ] {
                assert!(is_secret_property(key), "{key}");
            }
            for key in ["sasl.username", "security.protocol", "ssl.ca.location"] {
                assert!(!is_secret_property(key), "{key}");
            }
        }
    }
}
