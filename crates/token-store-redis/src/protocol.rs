//! The lease protocol: key names, the four Lua scripts, their arguments and their replies.
//! Shared by the blocking and the async store, which only differ in how they send a script.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, Value};
use token_store::{EncryptionKey, Sealer, derive_kid};

/// One configuration's place in Redis: its kid, the names of its keys, and the [`Sealer`] that
/// encrypts its records.
///
/// Built from the configuration's fingerprint (see [`token_store::derive_kid`]) and the
/// encryption key. Cheap to clone; prints its kid only.
#[derive(Clone)]
pub struct StoreKey {
    sealer: Sealer,
    value: String,
    lease: String,
    generation: String,
    channel: String,
}

impl StoreKey {
    /// The key for the configuration whose fingerprint is `fingerprint`, its records encrypted
    /// under `key`.
    pub fn new(fingerprint: &[u8], key: &EncryptionKey) -> Self {
        Self::from_kid(&derive_kid(fingerprint), key)
    }

    /// The key for an already derived kid.
    pub fn from_kid(kid: &str, key: &EncryptionKey) -> Self {
        Self {
            sealer: Sealer::new(key, kid),
            value: format!("tok:{{{kid}}}:v"),
            lease: format!("tok:{{{kid}}}:lease"),
            generation: format!("tok:{{{kid}}}:gen"),
            channel: format!("tok:{{{kid}}}:ch"),
        }
    }

    /// The kid (64 lowercase hex digits for a key made by [`StoreKey::new`]).
    pub fn kid(&self) -> &str {
        self.sealer.kid()
    }

    /// `tok:{kid}:v`: the hash holding `gen` and `blob`.
    pub fn value_key(&self) -> &str {
        &self.value
    }

    /// `tok:{kid}:lease`: `owner:gen` while a process fetches.
    pub fn lease_key(&self) -> &str {
        &self.lease
    }

    /// `tok:{kid}:gen`: the generation counter.
    pub fn generation_key(&self) -> &str {
        &self.generation
    }

    /// `tok:{kid}:ch`: the channel each successful publish announces its generation on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub(crate) fn keys(&self) -> [&str; 3] {
        [&self.value, &self.lease, &self.generation]
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreKey")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

/// A decrypted value read from the store.
#[derive(Clone, PartialEq, Eq)]
pub struct Stored {
    /// The record, decrypted (what the caller gave [`publish`](crate::RedisStore::publish)).
    pub plaintext: Vec<u8>,
    /// The generation it was published under.
    pub generation: u64,
    /// How long Redis keeps it still (its `PTTL` when read), counted on the reader's monotonic
    /// clock from when the call was made, never against another host's wall clock.
    pub ttl: Duration,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field(
                "plaintext",
                &format_args!("[redacted; {} bytes]", self.plaintext.len()),
            )
            .field("generation", &self.generation)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// What [`acquire`](crate::RedisStore::acquire) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// A value with more than the refresh-ahead window left: use it.
    Value(Stored),
    /// This store now holds the lease for `generation`: fetch a token, then
    /// [`publish`](crate::RedisStore::publish) it under `generation` (or
    /// [`release`](crate::RedisStore::release) the lease if the fetch fails). `stale` is the
    /// current value, if there is one that decrypts: still usable until its `ttl` runs out.
    Leased {
        /// The generation to publish under.
        generation: u64,
        /// The value being refreshed, if any.
        stale: Option<Stored>,
    },
    /// Another process holds the lease. Serve `value` if there is one; otherwise wait (poll
    /// with jitter, or subscribe to [`StoreKey::channel`]), at most `lease_ttl`, then acquire
    /// again.
    Busy {
        /// The current value, if there is one that decrypts.
        value: Option<Stored>,
        /// How long the other process's lease lasts still.
        lease_ttl: Duration,
    },
}

/// `acquire`. KEYS: value, lease, counter. ARGV: refresh-ahead ms, lease TTL ms, owner,
/// skip-fresh (`1` when the caller could not decrypt the value it was just given).
///
/// Replies `{'value', gen, blob, pttl}`, `{'leased', gen [, vgen, blob, vpttl]}` or
/// `{'busy', lease_pttl [, vgen, blob, vpttl]}`.
const ACQUIRE_LUA: &str = r#"
local function current()
  if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return nil end
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl <= 0 then return nil end
  local f = redis.call('HMGET', KEYS[1], 'gen', 'blob')
  local g = tonumber(f[1])
  if g == nil or not f[2] then return nil end
  return {g, f[2], pttl, f[1]}
end
local v = current()
if v and ARGV[4] ~= '1' and v[3] > tonumber(ARGV[1]) then
  return {'value', v[1], v[2], v[3]}
end
local lease_pttl = redis.call('PTTL', KEYS[2])
if lease_pttl == -1 then
  -- a lease without an expiry would block this key forever
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  lease_pttl = tonumber(ARGV[2])
end
if lease_pttl == -2 then
  local c = nil
  if redis.call('TYPE', KEYS[3]).ok == 'string' then c = tonumber(redis.call('GET', KEYS[3])) end
  if c == nil then redis.call('DEL', KEYS[3]); c = 0 end
  -- the counter stays ahead of the stored generation, even if the counter was lost
  if v and c < v[1] then redis.call('SET', KEYS[3], v[4]) end
  local g = redis.call('INCR', KEYS[3])
  redis.call('SET', KEYS[2], ARGV[3] .. ':' .. g, 'NX', 'PX', ARGV[2])
  if v then return {'leased', g, v[1], v[2], v[3]} end
  return {'leased', g}
end
if v then return {'busy', lease_pttl, v[1], v[2], v[3]} end
return {'busy', lease_pttl}
"#;

/// `publish`. KEYS: value, lease, counter. ARGV: gen, blob, TTL ms, owner, channel.
/// Writes only a generation newer than the stored one; deletes the lease only if it is
/// `owner:gen`; announces the generation on the channel when it wrote. Replies 1 if it wrote.
const PUBLISH_LUA: &str = r#"
local g = tonumber(ARGV[1])
local t = redis.call('TYPE', KEYS[1]).ok
local cur = nil
if t == 'hash' and redis.call('PTTL', KEYS[1]) > 0 then
  cur = tonumber(redis.call('HGET', KEYS[1], 'gen'))
end
local wrote = 0
if cur == nil or g > cur then
  if t ~= 'none' then redis.call('DEL', KEYS[1]) end
  redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'blob', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  wrote = 1
end
local ct = redis.call('TYPE', KEYS[3]).ok
if ct == 'none' then
  redis.call('SET', KEYS[3], ARGV[1])
elseif ct == 'string' then
  local c = tonumber(redis.call('GET', KEYS[3]))
  if c == nil or c < g then redis.call('SET', KEYS[3], ARGV[1]) end
end
if redis.call('TYPE', KEYS[2]).ok == 'string' and redis.call('GET', KEYS[2]) == ARGV[4] .. ':' .. ARGV[1] then
  redis.call('DEL', KEYS[2])
end
if wrote == 1 then redis.call('PUBLISH', ARGV[5], ARGV[1]) end
return wrote
"#;

/// `release`. KEYS: lease. ARGV: `owner:gen`. Compare-and-delete; replies 1 if it deleted.
const RELEASE_LUA: &str = r#"
if redis.call('TYPE', KEYS[1]).ok == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// `invalidate`. KEYS: value. ARGV: gen. Deletes the value only if its generation is `gen`;
/// replies 1 if it deleted.
const INVALIDATE_LUA: &str = r#"
if redis.call('TYPE', KEYS[1]).ok == 'hash' and redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_LUA));
pub(crate) static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_LUA));
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
pub(crate) static INVALIDATE: LazyLock<Script> = LazyLock::new(|| Script::new(INVALIDATE_LUA));

/// One script call: which script, its keys and its arguments.
pub(crate) struct Call {
    pub(crate) script: &'static Script,
    pub(crate) keys: Vec<String>,
    pub(crate) args: Vec<Vec<u8>>,
}

impl Call {
    pub(crate) fn invocation(&self) -> redis::ScriptInvocation<'static> {
        let mut invocation = self.script.prepare_invoke();
        for key in &self.keys {
            invocation.key(key.as_str());
        }
        for arg in &self.args {
            invocation.arg(arg.as_slice());
        }
        invocation
    }
}

/// Milliseconds for `PX`/`PEXPIRE`: at least 1 (0 is refused or deletes), at most `i64::MAX`.
fn px(d: Duration) -> Vec<u8> {
    let ms = d.as_millis().clamp(1, i64::MAX as u128);
    ms.to_string().into_bytes()
}

fn ms(d: Duration) -> Vec<u8> {
    d.as_millis().min(i64::MAX as u128).to_string().into_bytes()
}

pub(crate) fn acquire_call(
    key: &StoreKey,
    owner: &str,
    refresh_ahead: Duration,
    lease_ttl: Duration,
    skip_fresh: bool,
) -> Call {
    Call {
        script: &ACQUIRE,
        keys: key.keys().map(str::to_owned).to_vec(),
        args: vec![
            ms(refresh_ahead),
            px(lease_ttl),
            owner.as_bytes().to_vec(),
            if skip_fresh {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            },
        ],
    }
}

pub(crate) fn publish_call(
    key: &StoreKey,
    owner: &str,
    generation: u64,
    blob: Vec<u8>,
    ttl: Duration,
) -> Call {
    Call {
        script: &PUBLISH,
        keys: key.keys().map(str::to_owned).to_vec(),
        args: vec![
            generation.to_string().into_bytes(),
            blob,
            px(ttl),
            owner.as_bytes().to_vec(),
            key.channel().as_bytes().to_vec(),
        ],
    }
}

pub(crate) fn release_call(key: &StoreKey, owner: &str, generation: u64) -> Call {
    Call {
        script: &RELEASE,
        keys: vec![key.lease_key().to_owned()],
        args: vec![format!("{owner}:{generation}").into_bytes()],
    }
}

pub(crate) fn invalidate_call(key: &StoreKey, generation: u64) -> Call {
    Call {
        script: &INVALIDATE,
        keys: vec![key.value_key().to_owned()],
        args: vec![generation.to_string().into_bytes()],
    }
}

/// A value as a script returned it: still encrypted.
pub(crate) struct Sealed {
    generation: u64,
    blob: Vec<u8>,
    ttl: Duration,
}

impl Sealed {
    fn open(self, key: &StoreKey) -> Option<Stored> {
        let plaintext = key.sealer().open(self.generation, &self.blob)?;
        Some(Stored {
            plaintext,
            generation: self.generation,
            ttl: self.ttl,
        })
    }
}

/// The acquire script's reply, parsed but not decrypted.
pub(crate) enum RawAcquire {
    Value(Sealed),
    Leased(u64, Option<Sealed>),
    Busy(Duration, Option<Sealed>),
}

/// What to do with an acquire reply.
pub(crate) enum Next {
    Done(Acquire),
    /// The fresh value did not decrypt: ask again, with skip-fresh set.
    AskAgainSkippingFresh,
}

impl RawAcquire {
    pub(crate) fn parse(reply: Value) -> Result<Self, String> {
        let Value::Array(items) = reply else {
            return Err(format!("acquire: expected an array, got {}", shape(&reply)));
        };
        let tag = match items.first() {
            Some(Value::BulkString(b)) => b.as_slice(),
            Some(Value::SimpleString(s)) => s.as_bytes(),
            _ => return Err("acquire: reply without a tag".into()),
        };
        let int = |i: usize| -> Result<i64, String> {
            match items.get(i) {
                Some(Value::Int(n)) => Ok(*n),
                other => Err(format!(
                    "acquire: expected an integer at {i}, got {}",
                    other.map_or("nothing", shape)
                )),
            }
        };
        let sealed_at = |i: usize| -> Result<Option<Sealed>, String> {
            if items.len() <= i {
                return Ok(None);
            }
            let generation = generation(int(i)?)?;
            let blob = match items.get(i + 1) {
                Some(Value::BulkString(b)) => b.clone(),
                other => {
                    return Err(format!(
                        "acquire: expected a blob, got {}",
                        other.map_or("nothing", shape)
                    ));
                }
            };
            let ttl = duration_ms(int(i + 2)?);
            Ok(Some(Sealed {
                generation,
                blob,
                ttl,
            }))
        };
        match tag {
            b"value" => sealed_at(1)?
                .map(RawAcquire::Value)
                .ok_or_else(|| "acquire: value without a value".to_owned()),
            b"leased" => Ok(RawAcquire::Leased(generation(int(1)?)?, sealed_at(2)?)),
            b"busy" => Ok(RawAcquire::Busy(duration_ms(int(1)?), sealed_at(2)?)),
            other => Err(format!(
                "acquire: unknown tag {:?}",
                String::from_utf8_lossy(other)
            )),
        }
    }

    /// Decrypts. A value that does not decrypt is a miss: absent from `Leased`/`Busy`, and
    /// for a fresh value, a reason to ask again ignoring it.
    pub(crate) fn decide(self, key: &StoreKey) -> Next {
        match self {
            RawAcquire::Value(sealed) => match sealed.open(key) {
                Some(stored) => Next::Done(Acquire::Value(stored)),
                None => Next::AskAgainSkippingFresh,
            },
            RawAcquire::Leased(generation, stale) => Next::Done(Acquire::Leased {
                generation,
                stale: stale.and_then(|s| s.open(key)),
            }),
            RawAcquire::Busy(lease_ttl, value) => Next::Done(Acquire::Busy {
                value: value.and_then(|s| s.open(key)),
                lease_ttl,
            }),
        }
    }
}

/// The 0/1 reply of publish, release and invalidate.
pub(crate) fn parse_flag(reply: &Value, what: &str) -> Result<bool, String> {
    match reply {
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        other => Err(format!("{what}: expected 0 or 1, got {}", shape(other))),
    }
}

fn generation(n: i64) -> Result<u64, String> {
    u64::try_from(n).map_err(|_| format!("negative generation {n}"))
}

fn duration_ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0))
}

/// The type of a reply, for error messages (never its content: it may be a sealed token).
fn shape(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a bulk string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) => "a status",
        Value::Okay => "OK",
        Value::Map(_) => "a map",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        _ => "an unexpected reply",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_use_one_hash_tag_and_no_secret() {
        let key = StoreKey::new(
            b"fingerprint",
            &EncryptionKey::from_client_secret("hunter2"),
        );
        let kid = key.kid().to_owned();
        assert_eq!(kid.len(), 64);
        assert_eq!(key.value_key(), format!("tok:{{{kid}}}:v"));
        assert_eq!(key.lease_key(), format!("tok:{{{kid}}}:lease"));
        assert_eq!(key.generation_key(), format!("tok:{{{kid}}}:gen"));
        assert_eq!(key.channel(), format!("tok:{{{kid}}}:ch"));
        assert_eq!(
            format!("{key:?}"),
            format!("StoreKey {{ kid: {kid:?}, .. }}")
        );
    }

    #[test]
    fn stored_debug_is_redacted() {
        let stored = Stored {
            plaintext: b"eyJ-secret-token".to_vec(),
            generation: 3,
            ttl: Duration::from_secs(1),
        };
        let shown = format!("{:?}", Acquire::Value(stored));
        assert!(!shown.contains("eyJ"), "{shown}");
        assert!(shown.contains("[redacted; 16 bytes]"), "{shown}");
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let replies = [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::BulkString(b"value".to_vec())]),
            Value::Array(vec![Value::BulkString(b"value".to_vec()), Value::Int(1)]),
            Value::Array(vec![Value::BulkString(b"leased".to_vec()), Value::Int(-1)]),
            Value::Array(vec![
                Value::BulkString(b"busy".to_vec()),
                Value::Int(5),
                Value::Int(1),
                Value::Nil,
            ]),
            Value::Array(vec![Value::BulkString(b"nope".to_vec())]),
        ];
        for reply in replies {
            assert!(RawAcquire::parse(reply).is_err());
        }
        assert!(parse_flag(&Value::Int(2), "x").is_err());
        assert!(parse_flag(&Value::Nil, "x").is_err());
    }

    #[test]
    fn durations_are_clamped_for_px() {
        assert_eq!(px(Duration::ZERO), b"1");
        assert_eq!(px(Duration::from_millis(250)), b"250");
        assert_eq!(px(Duration::MAX), i64::MAX.to_string().into_bytes());
        assert_eq!(ms(Duration::ZERO), b"0");
    }
}
