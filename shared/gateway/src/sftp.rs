//! Antom's report files over SFTP (russh + russh-sftp): key-based login with the private key
//! from SSM Parameter Store (a SecureString, read per run, never logged), the server's host key
//! pinned (anything else is refused before the login), each file streamed to a local file, the
//! whole fetch bounded by the invocation's deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::StatusCode;
use tokio::io::AsyncWriteExt as _;
use zeroize::Zeroizing;

use crate::deadline::Deadline;

/// A file larger than this is refused (a day of 100,000 rows is about 20 MB).
const MAX_FILE_BYTES: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("SFTP {host}:{port}: {message}")]
    Connect {
        host: String,
        port: u16,
        message: String,
    },
    #[error("SFTP host key: the server's is {offered}, not the pinned one (ANTOM_SFTP_HOST_KEY)")]
    HostKey { offered: String },
    #[error("SFTP login refused for {0}")]
    Login(String),
    #[error("SFTP {path}: {message}")]
    File { path: String, message: String },
    #[error("SFTP: out of time ({0:?} left)")]
    Deadline(Duration),
    #[error("the SFTP key: {0}")]
    Key(String),
}

/// Where and as whom.
#[derive(Clone, Debug)]
pub struct SftpTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The server's host key, pinned.
    pub host_key: PublicKey,
}

/// An OpenSSH public key line (`ssh-ed25519 AAAA… [comment]`), as `ssh-keyscan` prints it
/// without the host name.
pub fn parse_host_key(text: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(text.trim()).map_err(|e| format!("not an OpenSSH public key: {e}"))
}

/// An OpenSSH private key (ed25519, ECDSA or RSA), unencrypted.
pub fn parse_private_key(text: &str) -> Result<PrivateKey, SftpError> {
    russh::keys::decode_secret_key(text, None).map_err(|e| SftpError::Key(e.to_string()))
}

/// Reads the private key from SSM (`WithDecryption`): the text is wiped once decoded.
pub async fn key_from_ssm(
    client: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<PrivateKey, SftpError> {
    let answer = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| SftpError::Key(format!("SSM {name}: {}", store::error_chain(&e))))?;
    let text = Zeroizing::new(
        answer
            .parameter
            .and_then(|p| p.value)
            .ok_or_else(|| SftpError::Key(format!("SSM {name} has no value")))?,
    );
    parse_private_key(&text)
}

/// A file fetched: which folder it came from, its name, where it is now and its size.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub folder: String,
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
}

struct Pinned {
    host_key: PublicKey,
    /// The fingerprint of a key refused, for the error (the handler is gone by then).
    offered: Arc<std::sync::Mutex<Option<String>>>,
}

impl Pinned {
    fn refuse(&self, what: String) -> bool {
        if let Ok(mut offered) = self.offered.lock() {
            *offered = Some(what);
        }
        false
    }
}

impl russh::client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            return Ok(self.refuse("a certificate".into()));
        };
        if key.key_data() == self.host_key.key_data() {
            return Ok(true);
        }
        Ok(self.refuse(format!(
            "{} {}",
            key.algorithm(),
            key.fingerprint(Default::default())
        )))
    }
}

/// Downloads every file of each folder (a missing folder is an empty one) that `wanted`
/// accepts (given the folder and the file's name) into `into`, within what `deadline` leaves
/// (less `reserve` for the work after).
pub async fn fetch(
    target: &SftpTarget,
    key: PrivateKey,
    folders: &[String],
    wanted: impl Fn(&str, &str) -> bool,
    into: &Path,
    deadline: &Deadline,
    reserve: Duration,
) -> Result<Vec<Fetched>, SftpError> {
    let limit = deadline.remaining().saturating_sub(reserve);
    if limit < Duration::from_secs(1) {
        return Err(SftpError::Deadline(deadline.remaining()));
    }
    match tokio::time::timeout(limit, fetch_all(target, key, folders, wanted, into)).await {
        Ok(result) => result,
        Err(_) => Err(SftpError::Deadline(deadline.remaining())),
    }
}

async fn fetch_all(
    target: &SftpTarget,
    key: PrivateKey,
    folders: &[String],
    wanted: impl Fn(&str, &str) -> bool,
    into: &Path,
) -> Result<Vec<Fetched>, SftpError> {
    let connect_error = |message: String| SftpError::Connect {
        host: target.host.clone(),
        port: target.port,
        message,
    };
    let config = Arc::new(russh::client::Config {
        inactivity_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    let offered = Arc::new(std::sync::Mutex::new(None));
    let handler = Pinned {
        host_key: target.host_key.clone(),
        offered: Arc::clone(&offered),
    };
    let mut session =
        match russh::client::connect(config, (target.host.as_str(), target.port), handler).await {
            Ok(session) => session,
            Err(russh::Error::UnknownKey) => {
                let offered = offered.lock().ok().and_then(|o| o.clone());
                return Err(SftpError::HostKey {
                    offered: offered.unwrap_or_else(|| "another key".into()),
                });
            }
            Err(e) => return Err(connect_error(e.to_string())),
        };
    let hash = session
        .best_supported_rsa_hash()
        .await
        .map_err(|e| connect_error(e.to_string()))?
        .flatten();
    let login = session
        .authenticate_publickey(
            target.user.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        )
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    if !login.success() {
        return Err(SftpError::Login(target.user.clone()));
    }
    let channel = session
        .channel_open_session()
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let mut fetched = Vec::new();
    for folder in folders {
        let entries = match sftp.read_dir(folder.as_str()).await {
            Ok(entries) => entries,
            Err(russh_sftp::client::error::Error::Status(status))
                if status.status_code == StatusCode::NoSuchFile =>
            {
                continue;
            }
            Err(e) => {
                return Err(SftpError::File {
                    path: folder.clone(),
                    message: e.to_string(),
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter(|e| e.file_type().is_file())
            .map(|e| e.file_name())
            .filter(|name| wanted(folder, name))
            .collect();
        names.sort();
        for name in names {
            let remote = format!("{}/{name}", folder.trim_end_matches('/'));
            let local = into.join(format!("{}-{name}", fetched.len()));
            let bytes = download(&sftp, &remote, &local).await?;
            tracing::info!(file = %remote, bytes, "report fetched");
            fetched.push(Fetched {
                folder: folder.clone(),
                name,
                path: local,
                bytes,
            });
        }
    }
    let _ = sftp.close().await;
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    Ok(fetched)
}

/// Streams one remote file to a local one; never more than [`MAX_FILE_BYTES`].
async fn download(sftp: &SftpSession, remote: &str, local: &Path) -> Result<u64, SftpError> {
    let error = |message: String| SftpError::File {
        path: remote.to_owned(),
        message,
    };
    let file = sftp.open(remote).await.map_err(|e| error(e.to_string()))?;
    let mut out = tokio::fs::File::create(local)
        .await
        .map_err(|e| error(format!("{}: {e}", local.display())))?;
    let mut limited = tokio::io::AsyncReadExt::take(file, MAX_FILE_BYTES + 1);
    let bytes = tokio::io::copy(&mut limited, &mut out)
        .await
        .map_err(|e| error(e.to_string()))?;
    if bytes > MAX_FILE_BYTES {
        return Err(error(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    out.flush().await.map_err(|e| error(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_in_openssh_form_and_nothing_else() {
        let host =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        assert!(parse_host_key(host).is_ok());
        assert!(parse_host_key(&format!("{host} comment")).is_ok());
        assert!(parse_host_key("SHA256:abc").is_err());
        assert!(matches!(
            parse_private_key("-----BEGIN NOTHING-----"),
            Err(SftpError::Key(_))
        ));
    }
}
