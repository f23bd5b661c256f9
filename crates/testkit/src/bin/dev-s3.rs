//! A local S3 server for development (`scripts/dev-up.sh` starts it): s3s-fs over a
//! directory, checking signatures with one key pair.
//!
//!   dev-s3 --port 59000 --dir .local/s3 --access-key KEY --secret-key SECRET [--host 127.0.0.1]
//!
//! `--secret-key-file PATH` instead of `--secret-key` keeps the key off the command line.
//!
//! `--host 0.0.0.0` serves other hosts: the compose stand-in for MinIO
//! (deploy/compose-local/). It stops on SIGINT and SIGTERM.

use anyhow::Context;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = testkit::cli_arg(&args, "--port")?
        .parse()
        .context("--port")?;
    let dir = std::path::PathBuf::from(testkit::cli_arg(&args, "--dir")?);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let host = testkit::cli_arg(&args, "--host").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("binding {host}:{port}"))?;
    let secret_key = match testkit::cli_arg(&args, "--secret-key-file") {
        Ok(path) => std::fs::read_to_string(&path)
            .with_context(|| format!("reading --secret-key-file {path}"))?
            .trim_end()
            .to_owned(),
        Err(_) => testkit::cli_arg(&args, "--secret-key")?,
    };
    let (server, _) = testkit::serve_s3(
        listener,
        &dir,
        &testkit::cli_arg(&args, "--access-key")?,
        &secret_key,
    )?;
    println!(
        "dev-s3 listening on http://{host}:{port} ({})",
        dir.display()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = server => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}
