//! Where the relay finds long-term credentials: the [`Credentials`] trait (plug in
//! a user store of your own) and [`Users`], the ready in-memory one. Time-limited
//! shared-secret credentials need no store: the core derives their keys from the
//! secrets in the settings.

use crate::adapters::std::prelude::*;

use std::collections::HashMap;

use crate::credentials::{Algorithm, Key, long_term_key, long_term_key_sha256, userhash};

/// A store of long-term credentials, asked (from the worker threads) when a
/// request authenticates. It must answer fast: it runs on the packet threads, for
/// requests, never for relayed data.
///
/// ```
/// use turn_core::adapters::std::Credentials;
/// use turn_core::credentials::{Algorithm, Key};
///
/// /// Every user's password is its name reversed (do not do this).
/// struct Mirror;
///
/// impl Credentials for Mirror {
///     fn key(&self, username: &str, realm: &str, algorithm: Algorithm) -> Option<Key> {
///         let password: String = username.chars().rev().collect();
///         Some(Key::derive(algorithm, username, realm, &password))
///     }
/// }
/// ```
pub trait Credentials: Send + Sync + 'static {
    /// The long-term key of `username` in `realm` for the password `algorithm`;
    /// `None` when there is no such user (or no key of that algorithm).
    fn key(&self, username: &str, realm: &str, algorithm: Algorithm) -> Option<Key>;

    /// The username whose USERHASH (SHA-256 of `username ":" realm`) is
    /// `userhash`; by default none (USERHASH then names nobody).
    fn username_by_hash(&self, userhash: &[u8; 32], realm: &str) -> Option<String> {
        let _ = (userhash, realm);
        None
    }
}

/// A user's keys: MD5 and SHA-256, either of which may be missing.
type UserKeys = (Option<[u8; 16]>, Option<[u8; 32]>);

/// Users and passwords kept in memory, as keys of both password algorithms for
/// one realm (the passwords themselves are not kept), or the keys alone where
/// the operator stored keys instead of passwords ([`Users::insert_key`]).
#[derive(Clone, Default)]
pub struct Users {
    realm: String,
    keys: HashMap<String, UserKeys>,
    by_hash: HashMap<[u8; 32], String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("realm", &self.realm)
            .field("users", &self.keys.len())
            .finish()
    }
}

impl Users {
    /// No users yet, for `realm`.
    pub fn new(realm: &str) -> Users {
        Users {
            realm: realm.to_string(),
            ..Users::default()
        }
    }

    /// Adds (or replaces) `name` with `password`.
    pub fn insert(&mut self, name: &str, password: &str) {
        let keys = (
            Some(long_term_key(name, &self.realm, password)),
            Some(long_term_key_sha256(name, &self.realm, password)),
        );
        self.keys.insert(name.to_string(), keys);
        self.by_hash
            .insert(userhash(name, &self.realm), name.to_string());
    }

    /// Adds `name`'s long-term `key` of one algorithm (MD5(name:realm:password)
    /// or its SHA-256), as coturn's `turnadmin -k` prints it: the password
    /// itself is then nowhere. A user with only one algorithm's key
    /// authenticates with that algorithm only.
    ///
    /// ```
    /// use turn_core::adapters::std::{Credentials, Users};
    /// use turn_core::credentials::{Algorithm, Key};
    /// let mut users = Users::new("TANDBERG");
    /// users.insert_key("cmsturn", Key::derive(Algorithm::Md5, "cmsturn", "TANDBERG", "pw"));
    /// assert!(users.key("cmsturn", "TANDBERG", Algorithm::Md5).is_some());
    /// assert!(users.key("cmsturn", "TANDBERG", Algorithm::Sha256).is_none());
    /// ```
    pub fn insert_key(&mut self, name: &str, key: Key) {
        let entry = self.keys.entry(name.to_string()).or_default();
        match key {
            Key::Md5(k) => entry.0 = Some(k),
            Key::Sha256(k) => entry.1 = Some(k),
        }
        self.by_hash
            .insert(userhash(name, &self.realm), name.to_string());
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The realm the keys are for.
    pub fn realm(&self) -> &str {
        &self.realm
    }
}

impl Credentials for Users {
    fn key(&self, username: &str, realm: &str, algorithm: Algorithm) -> Option<Key> {
        if realm != self.realm {
            return None;
        }
        let (md5, sha256) = self.keys.get(username)?;
        match algorithm {
            Algorithm::Md5 => md5.map(Key::Md5),
            Algorithm::Sha256 => sha256.map(Key::Sha256),
        }
    }

    fn username_by_hash(&self, userhash: &[u8; 32], realm: &str) -> Option<String> {
        (realm == self.realm)
            .then(|| self.by_hash.get(userhash).cloned())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_answer_both_algorithms_and_userhash() {
        let mut u = Users::new("TANDBERG");
        u.insert("callbridge", "s3cret");
        assert_eq!(
            u.key("callbridge", "TANDBERG", Algorithm::Md5),
            Some(Key::derive(
                Algorithm::Md5,
                "callbridge",
                "TANDBERG",
                "s3cret"
            ))
        );
        assert_eq!(
            u.key("callbridge", "TANDBERG", Algorithm::Sha256),
            Some(Key::derive(
                Algorithm::Sha256,
                "callbridge",
                "TANDBERG",
                "s3cret"
            ))
        );
        assert_eq!(u.key("callbridge", "other", Algorithm::Md5), None);
        assert_eq!(u.key("nobody", "TANDBERG", Algorithm::Md5), None);
        assert_eq!(
            u.username_by_hash(&userhash("callbridge", "TANDBERG"), "TANDBERG")
                .as_deref(),
            Some("callbridge")
        );
        assert_eq!(u.len(), 1);
    }
}
