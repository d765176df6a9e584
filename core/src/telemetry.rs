//! Tracing set-up shared by every Herald binary: `RUST_LOG` filtering, JSON lines when
//! `HERALD_LOG_FORMAT=json`, human-readable lines otherwise.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so tests
/// may call it freely; they log only when `TEST_LOG` is set.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// For tests: logs only when `TEST_LOG` is set, so a passing run stays quiet.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init("info,sqlx=warn");
    }
}
