//! The Ed25519 signing key and the public keys served as JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use http_kit::identity::{Jwk, Jwks};
use jsonwebtoken::EncodingKey;

#[derive(Clone, Default)]
pub struct SigningKeys {
    pub kid: String,
    pub encoding: Option<EncodingKey>,
    /// The current public key first, then previous ones still accepted.
    pub jwks: Jwks,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("SigningKeys")
            .field("kid", &self.kid)
            .field("public_kids", &kids)
            .finish()
    }
}

impl SigningKeys {
    /// From a PKCS#8 PEM private key; `additional_jwks` adds older public keys.
    pub fn from_pem(
        pem: &str,
        kid: Option<String>,
        additional_jwks: Option<&str>,
    ) -> Result<Self, String> {
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| "must be an Ed25519 private key in PKCS#8 PEM".to_owned())?;
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        let kid = kid.unwrap_or_else(|| format!("ed25519-{}", &x[..16]));
        let encoding =
            EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| format!("unusable key: {e}"))?;
        let mut jwks = Jwks {
            keys: vec![Jwk::ed25519(kid.clone(), x)],
        };
        if let Some(extra) = additional_jwks {
            let extra: Jwks = serde_json::from_str(extra)
                .map_err(|e| format!("JWT_ADDITIONAL_JWKS is not a JWKS document: {e}"))?;
            jwks.keys.extend(
                extra
                    .keys
                    .into_iter()
                    .filter(|k| k.is_ed25519() && k.kid != kid),
            );
        }
        Ok(Self {
            kid,
            encoding: Some(encoding),
            jwks,
        })
    }
}

/// A new Ed25519 private key as PKCS#8 PEM (`auth generate-key`).
pub fn generate_pem() -> Result<String, String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    key.to_pkcs8_pem(Default::default())
        .map(|pem| pem.to_string())
        .map_err(|e| format!("encoding the key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_publish_their_public_half() {
        let pem = generate_pem().expect("key");
        let keys = SigningKeys::from_pem(&pem, None, None).expect("loads");
        assert!(keys.kid.starts_with("ed25519-"));
        assert_eq!(keys.jwks.keys.len(), 1);
        assert_eq!(keys.jwks.keys[0].kid, keys.kid);
        let other = SigningKeys::from_pem(&generate_pem().expect("key"), Some("old".into()), None)
            .expect("loads");
        let extra = serde_json::to_string(&other.jwks).expect("json");
        let rotated = SigningKeys::from_pem(&pem, Some("new".into()), Some(&extra)).expect("loads");
        let kids: Vec<&str> = rotated.jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["new", "old"]);
        assert!(SigningKeys::from_pem("not a key", None, None).is_err());
    }
}
