//! Bearer tokens: `sbt1.<claims>.<signature>`, the claims JSON and the Ed25519 signature of
//! `sbt1.<claims>` each base64url without padding. Compact, self-contained (a replica checks one
//! without asking anyone), and signed with a key only the issuer holds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::keys::{SigningKey, VerifyingKeys};
use super::Claims;

const PREFIX: &str = "sbt1.";
/// Longest token accepted (a few hundred bytes is usual).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a switchboard token (expected sbt1.<claims>.<signature>)")]
    Malformed,
    #[error("signed with key {0}, which this server does not know")]
    UnknownKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("expired at {0} (Unix seconds)")]
    Expired(i64),
    #[error("token {0} was revoked")]
    Revoked(String),
}

/// Signs `claims` with `key` (its `kid` must be the key's).
pub fn issue(claims: &Claims, key: &SigningKey) -> String {
    let body = serde_json::to_vec(claims).expect("claims serialize");
    let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body));
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The claims of a token signed by one of `keys`, not expired at `now_s` and not revoked.
pub fn verify(token: &str, keys: &VerifyingKeys, now_s: i64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES || !token.starts_with(PREFIX) {
        return Err(TokenError::Malformed);
    }
    let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let body = signed
        .strip_prefix(PREFIX)
        .filter(|body| !body.contains('.'))
        .ok_or(TokenError::Malformed)?;
    let body = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
    let key = keys
        .get(&claims.kid)
        .ok_or_else(|| TokenError::UnknownKey(claims.kid.clone()))?;
    if !key.verify(signed.as_bytes(), &signature) {
        return Err(TokenError::BadSignature);
    }
    if claims.exp <= now_s {
        return Err(TokenError::Expired(claims.exp));
    }
    if keys.revoked(&claims.jti) {
        return Err(TokenError::Revoked(claims.jti));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeyFile;
    use crate::auth::Role;

    fn claims(kid: &str, exp: i64) -> Claims {
        Claims {
            kid: kid.into(),
            role: Role::Agent,
            sub: "fe-1".into(),
            specialists: vec!["fe-1".into()],
            tenant: None,
            types: Vec::new(),
            iat: 100,
            exp,
            jti: "j1".into(),
        }
    }

    #[test]
    fn a_token_verifies_only_with_its_key_before_expiry() {
        let file = KeyFile::generate().unwrap();
        let key = file.signing_key().unwrap();
        let keys = VerifyingKeys::from_files(std::slice::from_ref(&file), Vec::new()).unwrap();
        let token = issue(&claims(&file.kid, 1_000), &key);
        assert_eq!(
            verify(&token, &keys, 999).unwrap(),
            claims(&file.kid, 1_000)
        );
        assert_eq!(
            verify(&token, &keys, 1_000),
            Err(TokenError::Expired(1_000))
        );

        let other = KeyFile::generate().unwrap();
        let other_keys =
            VerifyingKeys::from_files(std::slice::from_ref(&other), Vec::new()).unwrap();
        assert_eq!(
            verify(&token, &other_keys, 0),
            Err(TokenError::UnknownKey(file.kid.clone()))
        );
        // The same kid with another key (a forged file) fails the signature.
        let mut forged = other.public_only();
        forged.kid = file.kid.clone();
        let forged_keys = VerifyingKeys::from_files(&[forged], Vec::new()).unwrap();
        assert_eq!(
            verify(&token, &forged_keys, 0),
            Err(TokenError::BadSignature)
        );

        // A changed claim breaks the signature.
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut admin = claims(&file.kid, 1_000);
        admin.role = Role::Admin;
        let tampered = format!(
            "{PREFIX}{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).unwrap())
        );
        assert_ne!(signed, tampered.rsplit_once('.').unwrap().0);
        assert_eq!(verify(&tampered, &keys, 0), Err(TokenError::BadSignature));

        let revoked =
            VerifyingKeys::from_files(std::slice::from_ref(&file), vec!["j1".into()]).unwrap();
        assert_eq!(
            verify(&token, &revoked, 0),
            Err(TokenError::Revoked("j1".into()))
        );
        for garbage in ["", "sbt1.", "sbt1.a.b.c", "Bearer x", "sbt1.!!!.???"] {
            assert_eq!(
                verify(garbage, &keys, 0),
                Err(TokenError::Malformed),
                "{garbage}"
            );
        }
    }
}
