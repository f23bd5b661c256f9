//! A Redis Cluster of the test's own: three primaries from Debian's `redis-server` on
//! free ports, joined by `redis-cli --cluster create` (no replicas). Killed and its
//! files removed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::wait_until;

pub struct TestRedisCluster {
    nodes: Vec<Child>,
    dir: PathBuf,
    pub ports: Vec<u16>,
    /// `redis+cluster://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c`, as `REDIS_URL` takes it.
    pub url: String,
}

/// A port that is free, and whose cluster-bus port (+10000) is free too.
fn cluster_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let probe = TcpListener::bind("127.0.0.1:0")?;
        let port = probe.local_addr()?.port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port pair for a Redis Cluster node")
}

impl TestRedisCluster {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("redis-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            ports: Vec::new(),
            url: String::new(),
        };
        for i in 0..3 {
            let port = cluster_port()?;
            let node_dir = cluster.dir.join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir)?;
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting redis-server (is it installed?)")?;
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        for port in cluster.ports.clone() {
            crate::wait_for_redis(&format!("redis://127.0.0.1:{port}")).await?;
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("redis-cli --cluster create")?;
        anyhow::ensure!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        // Every node agrees the cluster is whole (all 16384 slots served).
        for port in cluster.ports.clone() {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
            wait_until(Duration::from_secs(20), || async {
                let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })
            .await
            .context("the cluster did not reach cluster_state:ok")?;
        }
        cluster.url = format!("redis+cluster://{}", addresses.join(","));
        Ok(cluster)
    }
}

impl Drop for TestRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
