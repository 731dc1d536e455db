//! Where `token` and `get` keep tokens between runs: the cache directory (default), Redis
//! (`--store`), or memory only (`--no-cache`).
//!
//! The cache never fails a command: a directory that cannot be used, or a Redis server that
//! does not answer, is one warning on stderr and the run goes on in memory. Only a `--store`
//! value that is not a Redis URL at all is an error (a usage error, exit 2).

use std::sync::Arc;
use std::time::Duration;

use token_core::ClientConfig;
use token_store_disk::DiskStore;
use token_store_redis::RedisStore;
use transport_ureq::BlockingStore;

use crate::cli::CacheArgs;
use crate::failure::Fail;

/// The subdirectory of the user's cache directory.
pub const APP: &str = "tokenctl";

/// The longest a Redis connect may take before the run goes on without it.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the run uses.
pub enum Cache {
    /// A store, and how to name it in messages (a directory, or the Redis endpoint without
    /// its user-info).
    Store {
        /// The store.
        store: Arc<dyn BlockingStore>,
        /// Its name for people.
        place: String,
    },
    /// Memory only, and why.
    Memory {
        /// Why no store is used (`--no-cache`, no client secret, ...).
        why: String,
    },
}

impl Cache {
    /// Picks the store for `args` and `config`. Warnings (an unusable cache, an unreachable
    /// Redis) go to stderr here, once; only a malformed `--store` URL is an error.
    pub fn choose(args: &CacheArgs, config: &ClientConfig) -> Result<Cache, Fail> {
        if args.no_cache {
            return Ok(Cache::Memory {
                why: "--no-cache".to_owned(),
            });
        }
        let has_secret = config
            .credentials()
            .client_secret()
            .is_some_and(|s| !s.expose_secret().is_empty());
        if let Some(url) = &args.store {
            let store = RedisStore::builder(url)
                .connect_timeout(REDIS_CONNECT_TIMEOUT)
                .build()
                .map_err(|e| Fail::usage(format!("--store: {e}")))?;
            let place = store.endpoint().to_owned();
            if !has_secret {
                // The store seals records with a key derived from the client secret.
                let why = "the client has no secret to encrypt it with".to_owned();
                warn(&format!("not using the Redis store at {place}: {why}"));
                return Ok(Cache::Memory { why });
            }
            if let Err(e) = store.ping() {
                warn(&format!("{e}; going on without the shared store"));
                return Ok(Cache::Memory {
                    why: format!("Redis at {place} is unavailable"),
                });
            }
            return Ok(Cache::Store {
                store: Arc::new(store),
                place,
            });
        }
        if !has_secret {
            // Quietly: bookingtime-module clients never have a secret.
            return Ok(Cache::Memory {
                why: "the client has no secret to encrypt it with".to_owned(),
            });
        }
        let Some(dir) = DiskStore::default_dir(APP) else {
            warn(
                "no cache directory (neither XDG_CACHE_HOME nor HOME is set); tokens stay in memory",
            );
            return Ok(Cache::Memory {
                why: "no cache directory".to_owned(),
            });
        };
        match DiskStore::open(&dir) {
            Ok(store) => Ok(Cache::Store {
                store: Arc::new(store),
                place: dir.display().to_string(),
            }),
            Err(e) => {
                warn(&format!(
                    "{e}; tokens stay in memory (--no-cache silences this)"
                ));
                Ok(Cache::Memory {
                    why: "the cache directory cannot be used".to_owned(),
                })
            }
        }
    }
}

/// One warning line on stderr.
pub fn warn(message: &str) {
    eprintln!("tokenctl: warning: {}", crate::failure::one_line(message));
}
