//! The handshake's proofs (docs/PROTOCOL.md, "Authentication") and the dataset fingerprint.
//!
//! Both sides prove knowledge of a shared secret without sending it: the client MACs the `Hello`
//! payload and the worker's fresh nonce, the worker MACs the same plus the client's proof. Both
//! transcripts include a nonce chosen by the verifier, so a recorded handshake cannot be replayed.

use crate::message::Bytes32;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret `--token-file` accepts.
pub const MIN_TOKEN_LEN: usize = 16;

const CLIENT_LABEL: &[u8] = b"shardfeed client v1";
const WORKER_LABEL: &[u8] = b"shardfeed worker v1";

/// A shared secret, read once from a token file. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({} bytes)", self.0.len())
    }
}

impl Token {
    /// A token from a file's contents, with one trailing newline (as `echo` writes) removed.
    /// `None` when fewer than [`MIN_TOKEN_LEN`] bytes remain.
    pub fn from_file_bytes(mut bytes: Vec<u8>) -> Option<Token> {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        (bytes.len() >= MIN_TOKEN_LEN).then_some(Token(bytes))
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        for p in parts {
            mac.update(p);
        }
        mac
    }

    /// The client's proof: HMAC(token, "shardfeed client v1" ‖ hello ‖ worker_nonce).
    pub fn client_proof(&self, hello_payload: &[u8], worker_nonce: &Bytes32) -> Bytes32 {
        self.mac(&[CLIENT_LABEL, hello_payload, worker_nonce])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks a client's proof in constant time.
    pub fn verify_client(
        &self,
        hello_payload: &[u8],
        worker_nonce: &Bytes32,
        proof: &Bytes32,
    ) -> bool {
        self.mac(&[CLIENT_LABEL, hello_payload, worker_nonce])
            .verify_slice(proof)
            .is_ok()
    }

    /// The worker's proof: HMAC(token, "shardfeed worker v1" ‖ hello ‖ worker_nonce ‖ client proof).
    pub fn worker_proof(
        &self,
        hello_payload: &[u8],
        worker_nonce: &Bytes32,
        client_proof: &Bytes32,
    ) -> Bytes32 {
        self.mac(&[WORKER_LABEL, hello_payload, worker_nonce, client_proof])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks a worker's proof in constant time.
    pub fn verify_worker(
        &self,
        hello_payload: &[u8],
        worker_nonce: &Bytes32,
        client_proof: &Bytes32,
        proof: &Bytes32,
    ) -> bool {
        self.mac(&[WORKER_LABEL, hello_payload, worker_nonce, client_proof])
            .verify_slice(proof)
            .is_ok()
    }
}

/// The fingerprint of a dataset: SHA-256 of its `manifest.json` bytes (which hold every shard's
/// size and CRC32C, so the hash names the data).
pub fn dataset_fingerprint(manifest_bytes: &[u8]) -> Bytes32 {
    Sha256::digest(manifest_bytes).into()
}

/// A fingerprint as lowercase hex, for messages (the first `n` bytes).
pub fn short_hex(bytes: &Bytes32, n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        Token::from_file_bytes(s.as_bytes().to_vec()).expect("long enough")
    }

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_transcript() {
        let t = token("correct horse battery staple\n");
        let other = token("correct horse battery stapler");
        let nonce = [1; 32];
        let p = t.client_proof(b"hello", &nonce);
        assert!(t.verify_client(b"hello", &nonce, &p));
        assert!(!other.verify_client(b"hello", &nonce, &p));
        assert!(
            !t.verify_client(b"hellp", &nonce, &p),
            "the transcript is bound"
        );
        assert!(
            !t.verify_client(b"hello", &[2; 32], &p),
            "the nonce is bound"
        );
        let w = t.worker_proof(b"hello", &nonce, &p);
        assert!(t.verify_worker(b"hello", &nonce, &p, &w));
        assert!(!other.verify_worker(b"hello", &nonce, &p, &w));
        assert_ne!(w, p, "the two directions are labelled apart");
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = {
            let mut m = HmacSha256::new_from_slice(b"Jefe").expect("any key");
            m.update(b"what do ya want for nothing?");
            m.finalize().into_bytes()
        };
        assert_eq!(
            short_hex(&mac.into(), 32),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn short_tokens_are_refused_and_debug_hides_the_secret() {
        assert!(Token::from_file_bytes(b"short\n".to_vec()).is_none());
        let t = token("0123456789abcdef");
        assert_eq!(format!("{t:?}"), "Token(16 bytes)");
        // One trailing newline is not part of the secret.
        let a = token("0123456789abcdef\n").client_proof(b"h", &[0; 32]);
        assert_eq!(a, t.client_proof(b"h", &[0; 32]));
    }

    #[test]
    fn fingerprint_is_sha256() {
        assert_eq!(
            short_hex(&dataset_fingerprint(b"abc"), 32),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
