//! The local stand-in for Antom's SFTP server (scripts/python/sftp_server.py, PyPI asyncssh):
//! started on a free loopback port over a folder of its own, with its own host key and the
//! one client key it accepts. Stopped when dropped.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct LocalSftp {
    child: Child,
    /// What the server serves: the simulated Antom writes its reports under it.
    pub base: PathBuf,
    pub port: u16,
    pub user: String,
    /// The server's host key (`ssh-ed25519 AAAA…`), to pin.
    pub host_key: String,
    /// The client's OpenSSH private key (what goes into SSM).
    pub client_key: String,
    dir: PathBuf,
}

impl LocalSftp {
    /// Starts a server over a new folder; panics (a test's set-up) when it cannot.
    pub fn start() -> LocalSftp {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the repository")
            .to_path_buf();
        let dir =
            std::env::temp_dir().join(format!("antom-sftp-{}", uuid::Uuid::new_v4().simple()));
        let base = dir.join("root");
        std::fs::create_dir_all(&dir).expect("the server's folder");
        // asyncssh's own log (a client hanging up is a warning there) goes to a file beside it.
        let log = std::fs::File::create(dir.join("server.log")).expect("the server's log");
        let mut child = Command::new(repo.join(".venv/bin/python"))
            .arg(repo.join("scripts/python/sftp_server.py"))
            .arg("--root")
            .arg(&base)
            .arg("--keys")
            .arg(dir.join("keys"))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("the SFTP server (.venv from scripts/moto.sh): {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the SFTP server's first line");
        let started: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let text = |name: &str| started[name].as_str().unwrap_or_default().to_owned();
        let client_key = std::fs::read_to_string(text("client_key_file")).expect("the client key");
        LocalSftp {
            child,
            base,
            port: started["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .expect("port"),
            user: text("user"),
            host_key: text("host_key"),
            client_key,
            dir,
        }
    }
}

impl Drop for LocalSftp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
