//! Session tickets that every process of a server opens alike. rustls's own ticketer draws a
//! random key and, every six hours, another one, in each process: forked workers share the
//! first key only until their first rotation, and a worker made by a restart shares none. Here
//! the keys come from one secret, made once per server (by the process that binds the
//! listeners, before it forks its workers) and rotated on a fixed schedule derived from the
//! clock, so all processes use the same key at the same time without talking to each other.
//!
//! A ticket is `epoch (8 bytes) | nonce (12) | ChaCha20-Poly1305(state)`, the epoch also
//! authenticated; one sealed in the current or the previous epoch is accepted.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// How long one key seals new tickets; a ticket stays good for up to twice this.
pub const KEY_PERIOD: u64 = 6 * 60 * 60;

const EPOCH_LEN: usize = 8;

/// The server's ticket secret: made on first use (when the first server configuration is
/// made), or given with [`set_secret`] first (to keep tickets good across a restart).
static SECRET: OnceLock<[u8; 32]> = OnceLock::new();

/// Sets the ticket secret, unless one is in use already; whether it was set.
pub fn set_secret(secret: [u8; 32]) -> bool {
    SECRET.set(secret).is_ok()
}

/// The ticket secret (made now if there is none yet).
pub fn secret() -> [u8; 32] {
    *SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .expect("the system's random generator works");
        secret
    })
}

#[derive(Debug)]
pub(crate) struct SharedTicketer {
    secret: [u8; 32],
    period: u64,
}

impl SharedTicketer {
    pub(crate) fn new() -> Self {
        Self {
            secret: secret(),
            period: KEY_PERIOD,
        }
    }

    fn epoch(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        now / self.period
    }

    fn key(&self, epoch: u64) -> LessSafeKey {
        struct Len(usize);
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"polyphony session tickets");
        let info = epoch.to_be_bytes();
        let info = [&info[..]];
        let prk = salt.extract(&self.secret);
        let okm = prk
            .expand(&info, Len(CHACHA20_POLY1305.key_len()))
            .expect("a 32-byte output is within HKDF-SHA256's limits");
        let mut bytes = [0; 32];
        okm.fill(&mut bytes)
            .expect("the output length was given above");
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &bytes)
                .expect("a ChaCha20-Poly1305 key is 32 bytes"),
        )
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.period as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let epoch = self.epoch();
        let mut nonce = [0; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        let epoch_bytes = epoch.to_be_bytes();
        self.key(epoch)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&epoch_bytes),
                &mut sealed,
            )
            .ok()?;
        let mut ticket = Vec::with_capacity(EPOCH_LEN + NONCE_LEN + sealed.len());
        ticket.extend_from_slice(&epoch_bytes);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < EPOCH_LEN + NONCE_LEN + aead::MAX_TAG_LEN {
            return None;
        }
        let (epoch_bytes, rest) = ticket.split_at(EPOCH_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let epoch = u64::from_be_bytes(epoch_bytes.try_into().ok()?);
        let now = self.epoch();
        if epoch > now || now - epoch > 1 {
            return None; // sealed too long ago (or by a clock ahead of ours)
        }
        let mut plain = sealed.to_vec();
        let opened = self
            .key(epoch)
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(epoch_bytes),
                &mut plain,
            )
            .ok()?
            .len();
        plain.truncate(opened);
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_open_in_any_ticketer_with_the_same_secret_and_nowhere_else() {
        let a = SharedTicketer::new();
        let b = SharedTicketer::new(); // another worker: the same secret
        let ticket = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&ticket).unwrap(), b"session state");
        let stranger = SharedTicketer {
            secret: [7; 32],
            period: KEY_PERIOD,
        };
        assert_eq!(stranger.decrypt(&ticket), None);
        let mut forged = ticket.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(b.decrypt(&forged), None);
    }

    #[test]
    fn a_ticket_is_good_for_its_epoch_and_the_next_only() {
        let ticketer = SharedTicketer::new();
        let ticket = ticketer.encrypt(b"state").unwrap();
        let epoch = ticketer.epoch();
        let mut old = ticket.clone();
        old[..EPOCH_LEN].copy_from_slice(&(epoch - 2).to_be_bytes());
        assert_eq!(ticketer.decrypt(&old), None);
        // (Re-sealed under the previous epoch's key, it opens.)
        let previous = {
            let mut nonce = [0; NONCE_LEN];
            nonce[0] = 1;
            let mut sealed = b"state".to_vec();
            let e = (epoch - 1).to_be_bytes();
            ticketer
                .key(epoch - 1)
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&e),
                    &mut sealed,
                )
                .unwrap();
            [&e[..], &nonce[..], &sealed[..]].concat()
        };
        assert_eq!(ticketer.decrypt(&previous).unwrap(), b"state");
    }
}
