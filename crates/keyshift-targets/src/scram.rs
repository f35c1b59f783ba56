//! SCRAM-SHA-256 verifiers in PostgreSQL's stored form (RFC 5802, RFC 7677).
//!
//! ```text
//! SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//!
//! SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, iterations)
//! ClientKey      = HMAC(SaltedPassword, "Client Key")
//! StoredKey      = SHA256(ClientKey)
//! ServerKey      = HMAC(SaltedPassword, "Server Key")
//! ```
//!
//! PostgreSQL stores a password that already has this form as is, so a
//! role's password can be set without the plaintext reaching the server.
//! PostgreSQL normalizes passwords with SASLprep first; printable ASCII
//! (all a [`keyshift_core::Credential`] allows) is left unchanged by it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use keyshift_core::SecretValue;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// PBKDF2 iterations: PostgreSQL's default (`scram_iterations`).
pub(crate) const ITERATIONS: u32 = 4096;

/// Salt length in bytes: PostgreSQL's own.
pub(crate) const SALT_LEN: usize = 16;

/// The verifier's fixed prefix, mechanism and iteration count.
pub(crate) const PREFIX: &str = "SCRAM-SHA-256$4096:";

/// The two keys a server keeps (the ClientKey, which logs in, is not kept).
struct ServerKeys {
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

/// A fresh verifier for `password` with a random 16-byte salt.
pub(crate) fn verifier(password: &SecretValue) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    verifier_with_salt(password.expose().as_bytes(), &salt)
}

/// The verifier for `password` with `salt` and [`ITERATIONS`].
fn verifier_with_salt(password: &[u8], salt: &[u8]) -> String {
    let keys = server_keys(password, salt, ITERATIONS);
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(keys.stored_key),
        STANDARD.encode(keys.server_key)
    )
}

fn server_keys(password: &[u8], salt: &[u8], iterations: u32) -> ServerKeys {
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, salted.as_mut());
    let client_key = Zeroizing::new(hmac_sha256(salted.as_ref(), b"Client Key"));
    ServerKeys {
        stored_key: Sha256::digest(client_key.as_ref()).into(),
        server_key: hmac_sha256(salted.as_ref(), b"Server Key"),
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // Invariant: HMAC takes keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Whether `s` has exactly the shape [`verifier`] makes: the prefix, then
/// base64 of 16, 32 and 32 bytes. Only such a string is put between
/// quotes in SQL, so nothing in it needs escaping.
pub(crate) fn is_verifier(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(PREFIX) else {
        return false;
    };
    let Some((salt, keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((stored, server)) = keys.split_once(':') else {
        return false;
    };
    let decodes_to = |b64: &str, len: usize| STANDARD.decode(b64).is_ok_and(|b| b.len() == len);
    decodes_to(salt, SALT_LEN) && decodes_to(stored, 32) && decodes_to(server, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user `user`, password `pencil`.
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_AUTH_MESSAGE: &str = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
        r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
        c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_CLIENT_PROOF: &str = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_SIGNATURE: &str = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    #[test]
    fn keys_reproduce_the_rfc_7677_exchange() {
        let salt = STANDARD.decode(RFC_SALT).unwrap();
        let keys = server_keys(b"pencil", &salt, 4096);
        // The server proves itself with HMAC(ServerKey, AuthMessage).
        let signature = hmac_sha256(&keys.server_key, RFC_AUTH_MESSAGE.as_bytes());
        assert_eq!(STANDARD.encode(signature), RFC_SERVER_SIGNATURE);
        // The client's proof, XORed with HMAC(StoredKey, AuthMessage), is
        // the ClientKey, whose SHA-256 is the StoredKey.
        let client_signature = hmac_sha256(&keys.stored_key, RFC_AUTH_MESSAGE.as_bytes());
        let proof = STANDARD.decode(RFC_CLIENT_PROOF).unwrap();
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(client_key)),
            keys.stored_key
        );
    }

    #[test]
    fn verifier_has_postgresql_form() {
        let salt = STANDARD.decode(RFC_SALT).unwrap();
        // Also what PostgreSQL 15 keeps in pg_authid.rolpassword for this
        // verifier, and `pencil` logs in with it.
        assert_eq!(
            verifier_with_salt(b"pencil", &salt),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
             WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn fresh_verifiers_are_salted_and_well_formed() {
        let pw = SecretValue::new("a-password-that-stays-out".into()).unwrap();
        let (a, b) = (verifier(&pw), verifier(&pw));
        assert_ne!(a, b, "each verifier has its own salt");
        for v in [&a, &b] {
            assert!(is_verifier(v), "{v}");
            assert!(!v.contains(pw.expose()));
        }
    }

    #[test]
    fn only_verifiers_pass_the_shape_check() {
        let good = verifier_with_salt(b"pencil", &[7; SALT_LEN]);
        assert!(is_verifier(&good));
        for bad in [
            "pencil",
            "",
            "SCRAM-SHA-256$4096:",
            "md5d41d8cd98f00b204e9800998ecf8427e",
            &good.replace("4096", "1"),
            &format!("{good}'"),
            &good.replacen('$', "'$", 2),
            &verifier_with_salt(b"pencil", &[7; 8]),
        ] {
            assert!(!is_verifier(bad), "{bad}");
        }
    }
}
