//! A tansu broker of the test's own: `$TANSU_BIN broker` on a free loopback port with
//! SQLite storage in a temporary folder (`sqlite://tansu.db`, relative to the folder
//! the broker runs in: tansu 0.6 joins an absolute path to its working directory). It
//! keeps its records across `kill` + `restart`, like a real broker's log.
//!
//! The broker is started from a thread that lives until the broker exits, with
//! `PR_SET_PDEATHSIG`, so it dies with the test process even when the `TestKafka`
//! holding it is leaked for the life of the process; folders of test processes that are
//! gone are removed by the next start.
//!
//! [`TansuBroker::start_tls`] starts one that clients reach only over TLS, with a
//! certificate for 127.0.0.1 signed by a CA made for it (`openssl`), for tests of
//! `KAFKA_SECURITY_PROTOCOL`. tansu 0.6 cannot serve TLS itself (its CLI puts `--cert`
//! and `--key` in one exclusive group: either alone is useless, both are refused), so
//! the broker listens on a private port and advertises a TLS front of ours, which
//! terminates TLS (rustls) and forwards each connection to it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

const FOLDER_PREFIX: &str = "testkit-tansu-";

pub(crate) struct TansuBroker {
    bin: PathBuf,
    dir: PathBuf,
    /// Where tansu listens.
    port: u16,
    /// Where clients connect and what tansu advertises: `port`, or the TLS front's.
    public_port: u16,
    /// Set when the broker speaks TLS: its certificate and key, and the CA that signed it.
    tls: Option<Tls>,
    running: Mutex<Option<Running>>,
}

pub(crate) struct Tls {
    cert: PathBuf,
    key: PathBuf,
    pub(crate) ca: PathBuf,
}

/// Terminates TLS on `front` with `tls`'s certificate and forwards each connection to
/// tansu on 127.0.0.1:`upstream`, from a thread of its own for the life of the process.
fn serve_tls(front: TcpListener, upstream: u16, tls: &Tls) -> anyhow::Result<()> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .context("the broker's certificate")?
        .collect::<Result<Vec<_>, _>>()
        .context("the broker's certificate")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).context("the broker's key")?;
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    front.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("tansu-tls".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(front) = tokio::net::TcpListener::from_std(front) else {
                    return;
                };
                loop {
                    let Ok((client, _)) = front.accept().await else {
                        // Out of descriptors, say: do not spin.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        // A client that fails the handshake (plaintext, a CA it does not
                        // trust) is simply disconnected.
                        let Ok(mut client) = acceptor.accept(client).await else {
                            return;
                        };
                        let Ok(mut broker) =
                            tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    });
                }
            });
        })?;
    Ok(())
}

/// Makes a CA and a certificate for 127.0.0.1 and localhost signed by it, in `dir`.
fn make_certificates(dir: &std::path::Path) -> anyhow::Result<Tls> {
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl")?;
        anyhow::ensure!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=testkit Kafka CA",
        ],
    ]
    .concat())?;
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat())?;
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])?;
    Ok(Tls {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
    })
}

struct Running {
    pid: i32,
    exited: mpsc::Receiver<()>,
}

/// The broker binary: `TANSU_BIN`.
fn binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("TANSU_BIN").map(PathBuf::from).context(
        "TANSU_BIN is not set: scripts/test.sh builds tansu once per machine and sets it \
         (or: source scripts/lib/services.sh && export TANSU_BIN=$(ensure_tansu))",
    )?;
    anyhow::ensure!(bin.is_file(), "TANSU_BIN={} does not exist", bin.display());
    Ok(bin)
}

/// Removes the folders of brokers whose test process has exited.
fn remove_stale_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(FOLDER_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl TansuBroker {
    pub(crate) fn start() -> anyhow::Result<Self> {
        Self::start_with(false)
    }

    /// A broker that speaks only TLS (the CA: [`Self::tls`]).
    pub(crate) fn start_tls() -> anyhow::Result<Self> {
        Self::start_with(true)
    }

    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    fn start_with(tls: bool) -> anyhow::Result<Self> {
        let bin = binary()?;
        remove_stale_folders();
        let dir = std::env::temp_dir().join(format!(
            "{FOLDER_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let (tls, public_port) = if tls {
            let tls = make_certificates(&dir)?;
            let front = TcpListener::bind("127.0.0.1:0")?;
            let public_port = front.local_addr()?.port();
            serve_tls(front, port, &tls)?;
            (Some(tls), public_port)
        } else {
            (None, port)
        };
        let broker = Self {
            bin,
            dir,
            port,
            public_port,
            tls,
            running: Mutex::new(None),
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// `bootstrap.servers` of this broker.
    pub(crate) fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.public_port)
    }

    fn spawn(&self) -> anyhow::Result<()> {
        let mut running = self.running.lock().expect("tansu lock");
        anyhow::ensure!(running.is_none(), "tansu is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.public_port);
        let mut command = Command::new(&self.bin);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(&self.dir)
            // TANSU_LOG=info (or debug) puts more of the broker's log in its folder.
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (started, pid) = mpsc::channel();
        let (exit, exited) = mpsc::channel();
        // The death signal follows the thread that forked: this one lives as long as
        // the broker does.
        std::thread::Builder::new()
            .name("tansu".into())
            .spawn(move || match command.spawn() {
                Ok(mut child) => {
                    let _ = started.send(Ok(child.id()));
                    let _ = child.wait();
                    let _ = exit.send(());
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                }
            })?;
        let pid = pid
            .recv()
            .context("the tansu thread ended")?
            .with_context(|| format!("starting {}", self.bin.display()))?;
        *running = Some(Running {
            pid: i32::try_from(pid)?,
            exited,
        });
        drop(running);
        self.wait_listening()
    }

    fn wait_listening(&self) -> anyhow::Result<()> {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let exited = self
                .running
                .lock()
                .expect("tansu lock")
                .as_ref()
                .is_some_and(|r| r.exited.try_recv().is_ok());
            if exited || Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default();
                anyhow::bail!(
                    "tansu did not listen on {address} ({}): {log}",
                    if exited { "it exited" } else { "timed out" }
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker (SIGKILL, as a crash) and waits for it to exit.
    pub(crate) fn kill(&self) -> anyhow::Result<()> {
        let Some(running) = self.running.lock().expect("tansu lock").take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on the pid of our own child.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(running.pid, libc::SIGKILL);
        }
        match running.exited.recv_timeout(Duration::from_secs(10)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                anyhow::bail!("tansu did not exit after SIGKILL")
            }
        }
    }

    /// Starts the broker again on the same port and storage.
    pub(crate) fn restart(&self) -> anyhow::Result<()> {
        self.spawn()
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
