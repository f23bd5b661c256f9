//! Pieces of every service binary's command line.

use crate::config::{ConfigErrors, ConfigReader, ProcessEnv};

/// The subcommands every service binary has.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CommonCommand {
    /// Serve HTTP (the default).
    Serve,
    /// Validate the settings and exit: 0 when valid, 2 naming each bad setting.
    CheckConfig,
    /// Apply pending main-database migrations and exit (never done at server start).
    Migrate,
}

/// Reads settings from the environment (and a `.env` file, in development).
pub fn load_settings<S>(read: impl FnOnce(&mut ConfigReader<'_>) -> S) -> Result<S, ConfigErrors> {
    // A missing .env file is normal outside development.
    let _ = dotenvy::dotenv();
    let env = ProcessEnv;
    let mut reader = ConfigReader::new(&env);
    let settings = read(&mut reader);
    reader.finish(settings)
}

/// Exit code for invalid settings.
pub const EXIT_CONFIG: u8 = 2;

/// A multi-threaded Tokio runtime for a binary's `main`.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}
