//! A throw-away server in this process, for the drill, tests and demos.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use keyshift_core::SecretValue;
use tokio_util::sync::CancellationToken;

type Configure = Box<dyn Fn(ServeConfig) -> ServeConfig + Send + Sync>;

use crate::bootstrap::{init, Server, ServerError};
use crate::config::ServeConfig;

/// How long [`DevServer::restart`] keeps trying to bind the same port.
const REBIND_FOR: Duration = Duration::from_secs(5);

/// A server with a temporary data dir (deleted when dropped), a root token,
/// and a listener on 127.0.0.1. It stops when dropped. Never for
/// production: the data dir and the master key are thrown away.
pub struct DevServer {
    addr: SocketAddr,
    root_token: SecretValue,
    dir: tempfile::TempDir,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    configure: Configure,
}

impl DevServer {
    /// Initializes a temporary data dir and serves it on a free port.
    ///
    /// # Errors
    ///
    /// When the data dir, the store or the listener cannot be set up.
    pub async fn start() -> Result<DevServer, ServerError> {
        Self::start_with(|config| config).await
    }

    /// [`start`](Self::start), with `configure` changing each boot's
    /// config (a test's manual clock, say).
    ///
    /// # Errors
    ///
    /// When the data dir, the store or the listener cannot be set up.
    pub async fn start_with(
        configure: impl Fn(ServeConfig) -> ServeConfig + Send + Sync + 'static,
    ) -> Result<DevServer, ServerError> {
        let dir = tempfile::Builder::new()
            .prefix("keyshift-dev-")
            .tempdir()
            .map_err(|source| ServerError::Io {
                context: "creating a throw-away data dir".to_owned(),
                source,
            })?;
        let report = init(dir.path()).await?;
        let mut server = DevServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            root_token: report.root_token,
            dir,
            stop: CancellationToken::new(),
            task: None,
            configure: Box::new(configure),
        };
        server.boot(server.addr).await?;
        Ok(server)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The root token (admin on `*`).
    pub fn root_token(&self) -> &SecretValue {
        &self.root_token
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops serving (watch streams end, rotations pause); the data dir
    /// stays for [`restart`](Self::restart).
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops if running and starts again on the same data dir: on the same
    /// port when `same_port` (retrying while the old socket lingers), else
    /// on a new free one. Unfinished rotations resume.
    ///
    /// # Errors
    ///
    /// When the server cannot start again.
    pub async fn restart(&mut self, same_port: bool) -> Result<(), ServerError> {
        self.stop().await;
        let listen = if same_port {
            self.addr
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        self.boot(listen).await
    }

    async fn boot(&mut self, listen: SocketAddr) -> Result<(), ServerError> {
        let deadline = tokio::time::Instant::now() + REBIND_FOR;
        let server = loop {
            let config =
                (self.configure)(ServeConfig::new(self.dir.path().to_owned()).listen(listen));
            match Server::start(config).await {
                Ok(server) => break server,
                Err(ServerError::Io { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.addr = server.local_addr()?;
        self.stop = CancellationToken::new();
        let stop = self.stop.clone();
        self.task = Some(tokio::spawn(async move {
            if let Err(e) = server.run(async move { stop.cancelled().await }).await {
                tracing::error!(error = %e, "dev server stopped");
            }
        }));
        Ok(())
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
