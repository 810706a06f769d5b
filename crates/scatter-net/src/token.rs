//! Join and invite tokens and recovery codes: a one-time secret and, on a TLS grid, the CA
//! fingerprint that authenticates the coordinator on first contact.
//!
//! Text form: `sct_<64 hex secret>` on an `--insecure` grid, `sct_<64 hex secret>_<64 hex CA
//! fingerprint>` otherwise. The coordinator stores only a hash of the `sct_<secret>` part.
//! A recovery code has the same form with `scr_`: its secret never goes to the coordinator
//! (see `scatter_core::recovery`), so it must never be mistaken for an invite.

use std::fmt;
use std::str::FromStr;

use crate::Fingerprint;

/// A parsed token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    secret: String,
    ca: Option<Fingerprint>,
}

/// Why a token does not parse.
#[derive(Debug, thiserror::Error)]
#[error("this is not a Scatter token (expected sct_ or scr_ and 64 or 129 more characters, as printed by scatter); copy it again")]
pub struct BadToken;

impl Token {
    /// A token for `secret` (`sct_…`, or `scr_…` for a recovery code) on a grid whose CA has
    /// fingerprint `ca`.
    pub fn new(secret: &str, ca: Option<Fingerprint>) -> Result<Self, BadToken> {
        let hex = secret.strip_prefix("sct_").or_else(|| secret.strip_prefix("scr_")).ok_or(BadToken)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadToken);
        }
        Ok(Self { secret: secret.to_owned(), ca })
    }

    /// A recovery code with `secret` on a grid whose CA has fingerprint `ca`.
    pub fn recovery(secret: &[u8; 32], ca: Option<Fingerprint>) -> Self {
        Self { secret: format!("scr_{}", hex::encode(secret)), ca }
    }

    /// The secret part, the one the coordinator checks (of an invite or join token).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether this is a recovery code rather than an invite or join token.
    pub fn is_recovery(&self) -> bool {
        self.secret.starts_with("scr_")
    }

    /// The secret's 32 bytes.
    pub fn secret_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // `new` checked 64 hex digits.
        hex::decode_to_slice(&self.secret[4..], &mut out).expect("a token's secret is 64 hex digits");
        out
    }

    /// The grid CA's fingerprint, or `None` for a plain-HTTP grid.
    pub fn ca(&self) -> Option<Fingerprint> {
        self.ca
    }
}

impl FromStr for Token {
    type Err = BadToken;
    fn from_str(s: &str) -> Result<Self, BadToken> {
        let s = s.trim();
        match s.get(..68).map(|secret| (secret, &s[68..])) {
            Some((secret, "")) => Self::new(secret, None),
            Some((secret, rest)) => {
                let fp = rest.strip_prefix('_').and_then(|h| h.parse().ok()).ok_or(BadToken)?;
                Self::new(secret, Some(fp))
            }
            None => Err(BadToken),
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ca {
            Some(fp) => write!(f, "{}_{fp}", self.secret),
            None => f.write_str(&self.secret),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret: tokens end up in logs through Debug.
        write!(f, "Token(ca: {:?})", self.ca)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sct_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn round_trips_with_and_without_fingerprint() {
        for ca in [None, Some(Fingerprint([0xab; 32]))] {
            let t = Token::new(SECRET, ca).expect("valid");
            let parsed: Token = t.to_string().parse().expect("parse");
            assert_eq!(parsed, t);
            assert_eq!(parsed.secret(), SECRET);
            assert_eq!(parsed.ca(), ca);
        }
        assert_eq!(format!(" {SECRET}\n").parse::<Token>().expect("trimmed").secret(), SECRET);
    }

    #[test]
    fn rejects_malformed_tokens() {
        let good = Token::new(SECRET, Some(Fingerprint([1; 32]))).expect("valid").to_string();
        for bad in [
            "",
            "sct_",
            "abc",
            &SECRET[..67],
            &SECRET.replace("sct_", "tok_"),
            &SECRET.replace('a', "g"),
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replacen('_', "-", 2),
            &format!("{SECRET}é"),
        ] {
            assert!(bad.parse::<Token>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn recovery_codes_are_told_apart_from_invites() {
        let code = Token::recovery(&[0xab; 32], Some(Fingerprint([1; 32])));
        let parsed: Token = code.to_string().parse().expect("parse");
        assert!(parsed.is_recovery() && parsed.to_string().starts_with("scr_"));
        assert_eq!(parsed.secret_bytes(), [0xab; 32]);
        assert!(!SECRET.parse::<Token>().expect("invite").is_recovery());
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = Token::new(SECRET, None).expect("valid");
        assert!(!format!("{t:?}").contains("0011"));
    }
}
