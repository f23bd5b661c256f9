//! What every service binary's `main` shares: loading settings (refusing to start and
//! naming each bad one), tracing, the runtime, and the common subcommands.

use std::fmt::Debug;
use std::future::Future;
use std::process::ExitCode;

use crate::config::{ConfigErrors, ConfigReader, ProcessEnv};
use crate::lifecycle::Running;
use crate::server::Listeners;
use crate::{telemetry, CommonSettings, ServiceInfo};

/// The subcommands every service binary has.
#[derive(Debug, Clone, Default, clap::Subcommand)]
pub enum CommonCommand {
    /// Serve HTTP (the default).
    #[default]
    Serve,
    /// Validate the settings and exit: 0 when valid, 2 naming each bad setting.
    CheckConfig,
    /// Apply pending main-database migrations and exit (never done at server start).
    Migrate,
}

/// Exit code for invalid settings.
pub const EXIT_CONFIG: u8 = 2;

/// A service as its binary sees it.
pub trait Service {
    const INFO: ServiceInfo;
    type Settings: Debug + Send + 'static;

    fn read_settings(reader: &mut ConfigReader<'_>) -> Self::Settings;
    fn common(settings: &Self::Settings) -> &CommonSettings;
    /// Builds the service's HTTP server on `listeners` and spawns its background tasks
    /// (tests and the binary call it; must be called inside a Tokio runtime).
    fn start(settings: Self::Settings, listeners: Listeners) -> anyhow::Result<Running>;
}

/// Declares a service crate's `pub struct Service`: the [`Service`] whose settings are
/// `$settings` (read by its `read`, the common part in its `common` field) and which
/// `$start(settings, listeners)` builds. Every service crate declares itself this way,
/// so the five start up alike (docs/ARCHITECTURE.md, "One service shape").
#[macro_export]
macro_rules! service {
    ($info:expr, $settings:ty, $start:path) => {
        /// The service as its binary and the tests run it.
        pub struct Service;

        impl $crate::cli::Service for Service {
            const INFO: $crate::ServiceInfo = $info;
            type Settings = $settings;

            fn read_settings(reader: &mut $crate::ConfigReader<'_>) -> $settings {
                <$settings>::read(reader)
            }

            fn common(settings: &$settings) -> &$crate::CommonSettings {
                &settings.common
            }

            fn start(
                settings: $settings,
                listeners: $crate::server::Listeners,
            ) -> $crate::cli::StartResult {
                $start(settings, listeners)
            }
        }
    };
}

/// What [`Service::start`] returns.
pub type StartResult = anyhow::Result<Running>;

/// Binds the configured address and serves until SIGTERM/SIGINT, then stops: no new
/// connections, requests in flight finished, background tasks stopped, all within
/// `SHUTDOWN_TIMEOUT_SECS` (`lifecycle`).
pub async fn serve<S: Service>(settings: S::Settings) -> anyhow::Result<()> {
    let common = S::common(&settings);
    let (address, internal) = (common.bind_address(), common.internal_bind_address());
    let grace = common.shutdown_timeout;
    let signals = crate::lifecycle::Signals::install()?;
    let listeners = Listeners::bind(common)?;
    tracing::info!(%address, %internal, service = S::INFO.name, version = S::INFO.version, "listening");
    let running = S::start(settings, listeners)?;
    tracing::info!(
        service = S::INFO.name,
        background = ?running.background.names(),
        "started"
    );
    crate::lifecycle::serve_until_signalled(running, signals, S::INFO.name, grace).await?;
    tracing::info!(service = S::INFO.name, "stopped");
    Ok(())
}

/// Reads settings from the environment (and a `.env` file, in development).
pub fn load_settings<S>(read: impl FnOnce(&mut ConfigReader<'_>) -> S) -> Result<S, ConfigErrors> {
    // A missing .env file is normal outside development.
    let _ = dotenvy::dotenv();
    load_settings_from(&ProcessEnv, read)
}

/// Reads settings from `env`, with Vault KV first when it says `USE_VAULT=true`
/// (`vault_env`).
pub fn load_settings_from<S>(
    env: &dyn crate::config::EnvSource,
    read: impl FnOnce(&mut ConfigReader<'_>) -> S,
) -> Result<S, ConfigErrors> {
    let overlay = crate::vault_env::overlay(env)?;
    let source: &dyn crate::config::EnvSource = match &overlay {
        Some(overlay) => overlay,
        None => env,
    };
    let mut reader = ConfigReader::new(source);
    let settings = read(&mut reader);
    reader.finish(settings)
}

/// Loads settings, sets up tracing and a runtime, then runs `task` with the settings.
pub fn run_with<S, F, Fut>(task: F) -> ExitCode
where
    S: Service,
    F: FnOnce(S::Settings) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let name = S::INFO.name;
    let settings = match load_settings(S::read_settings) {
        Ok(settings) => settings,
        Err(errors) => {
            eprintln!("{name}: refusing to start: {errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let common = S::common(&settings);
    telemetry::init(common.log_format, &common.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(task(settings)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one of the common subcommands; `migrate` gets `DATABASE_ADMIN_URL` (by default `DATABASE_URL`).
pub fn run<S, M, Fut>(command: CommonCommand, migrate: M) -> ExitCode
where
    S: Service,
    M: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_with::<S, _, _>(|settings| async move {
        match command {
            CommonCommand::Serve => serve::<S>(settings).await?,
            CommonCommand::CheckConfig => {
                println!("{}: configuration is valid\n{settings:#?}", S::INFO.name);
            }
            CommonCommand::Migrate => {
                migrate(S::common(&settings).database_admin_url.expose().clone()).await?
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
