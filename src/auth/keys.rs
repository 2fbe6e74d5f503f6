//! Token keys: Ed25519 (ring). `token keygen` writes a key file holding the private key and a
//! `.pub` file without it; a server needs only the public part, so a replica that leaks its files
//! leaks no power to issue tokens. A key's id is derived from its public key. Several keys may be
//! trusted at once (rotation), and token ids listed as revoked are refused.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A key file as stored (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub kid: String,
    /// The Ed25519 public key, base64.
    pub public_key: String,
    /// The PKCS#8 private key, base64; absent in a `.pub` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

impl KeyFile {
    /// A new random key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let random = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&random)
            .map_err(|_| KeyError("no randomness for a key".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| KeyError("a generated key does not parse".into()))?;
        let public = pair.public_key().as_ref();
        Ok(Self {
            kid: key_id(public),
            public_key: STANDARD.encode(public),
            private_key: Some(STANDARD.encode(pkcs8.as_ref())),
        })
    }

    /// The same key without its private part (what a `.pub` file holds).
    pub fn public_only(&self) -> Self {
        Self {
            private_key: None,
            ..self.clone()
        }
    }

    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| KeyError(format!("reading key file {}: {error}", path.display())))?;
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|error| KeyError(format!("key file {}: {error}", path.display())))?;
        file.public()?;
        Ok(file)
    }

    /// Writes the file readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let text = serde_json::to_string_pretty(self).expect("a key file serializes");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| KeyError(format!("creating {}: {error}", path.display())))?;
        file.write_all(format!("{text}\n").as_bytes())
            .map_err(|error| KeyError(format!("writing {}: {error}", path.display())))
    }

    fn public(&self) -> Result<Vec<u8>, KeyError> {
        let public = STANDARD
            .decode(&self.public_key)
            .map_err(|_| KeyError(format!("key {}: public_key is not base64", self.kid)))?;
        if public.len() != 32 {
            return Err(KeyError(format!(
                "key {}: public_key is not an Ed25519 key",
                self.kid
            )));
        }
        Ok(public)
    }

    /// The key that signs tokens; an error for a `.pub` file.
    pub fn signing_key(&self) -> Result<SigningKey, KeyError> {
        let private = self.private_key.as_deref().ok_or_else(|| {
            KeyError(format!(
                "key {} has no private part (a .pub file verifies tokens but cannot issue them)",
                self.kid
            ))
        })?;
        let pkcs8 = STANDARD
            .decode(private)
            .map_err(|_| KeyError(format!("key {}: private_key is not base64", self.kid)))?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| {
            KeyError(format!(
                "key {}: private_key is not an Ed25519 key",
                self.kid
            ))
        })?;
        if pair.public_key().as_ref() != self.public()?.as_slice() {
            return Err(KeyError(format!(
                "key {}: the private key does not match the public key",
                self.kid
            )));
        }
        Ok(SigningKey {
            kid: self.kid.clone(),
            pair,
        })
    }
}

/// A key's id: the first 8 bytes of the SHA-256 of its public key, in hex.
fn key_id(public: &[u8]) -> String {
    Sha256::digest(public)[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub struct SigningKey {
    pub kid: String,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// The public keys a server trusts, by id, and the token ids it refuses.
#[derive(Debug, Clone, Default)]
pub struct VerifyingKeys {
    keys: HashMap<String, Vec<u8>>,
    revoked: std::collections::HashSet<String>,
}

pub struct VerifyingKey<'a>(&'a [u8]);

impl VerifyingKey<'_> {
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl VerifyingKeys {
    pub fn from_files(files: &[KeyFile], revoked: Vec<String>) -> Result<Self, KeyError> {
        let mut keys = HashMap::new();
        for file in files {
            keys.insert(file.kid.clone(), file.public()?);
        }
        Ok(Self {
            keys,
            revoked: revoked.into_iter().collect(),
        })
    }

    /// Reads the key files and the revocation list (one token id per line, `#` comments).
    pub fn load(paths: &[std::path::PathBuf], revoked: Option<&Path>) -> Result<Self, KeyError> {
        let files = paths
            .iter()
            .map(|path| KeyFile::read(path))
            .collect::<Result<Vec<_>, _>>()?;
        let revoked = match revoked {
            None => Vec::new(),
            Some(path) => std::fs::read_to_string(path)
                .map_err(|error| KeyError(format!("reading {}: {error}", path.display())))?
                .lines()
                .map(|line| {
                    line.split('#')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .filter(|line| !line.is_empty())
                .collect(),
        };
        Self::from_files(&files, revoked)
    }

    pub fn get(&self, kid: &str) -> Option<VerifyingKey<'_>> {
        self.keys.get(kid).map(|key| VerifyingKey(key))
    }

    pub fn revoked(&self, jti: &str) -> bool {
        self.revoked.contains(jti)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_and_its_pub_file_cannot_sign() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::generate().unwrap();
        let path = dir.path().join("key.json");
        file.write(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            file.write(&path).is_err(),
            "an existing file is not overwritten"
        );
        let read = KeyFile::read(&path).unwrap();
        assert_eq!(read, file);
        assert_eq!(read.kid.len(), 16);
        read.signing_key().unwrap();
        let public = read.public_only();
        assert!(public.signing_key().is_err());
        let keys = VerifyingKeys::from_files(&[public], Vec::new()).unwrap();
        assert!(keys.get(&file.kid).is_some());
    }
}
