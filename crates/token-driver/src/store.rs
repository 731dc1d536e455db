//! The shared-store interface the transports execute the manager's store operations through.
//! Stores (`token-store-redis`, the local-disk store) implement it; the manager never calls it.

use std::future::Future;
use std::pin::Pin;

use token_core::{StoreReply, StoreRequest};

/// A shared store for the blocking transport: runs one operation to completion on the calling
/// (pool) thread. It must not hang: bound every network wait, and answer
/// [`StoreReply::Failed`] when the store cannot be reached.
pub trait BlockingStore: Send + Sync + 'static {
    /// Runs `request`'s operation.
    fn execute(&self, request: &StoreRequest) -> StoreReply;
}

/// A boxed future of a store reply.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = StoreReply> + Send + 'a>>;

/// A shared store for the async transport. Same contract as [`BlockingStore`].
pub trait AsyncStore: Send + Sync + 'static {
    /// Runs `request`'s operation.
    fn execute<'a>(&'a self, request: &'a StoreRequest) -> StoreFuture<'a>;
}

impl<S: BlockingStore + ?Sized> BlockingStore for std::sync::Arc<S> {
    fn execute(&self, request: &StoreRequest) -> StoreReply {
        (**self).execute(request)
    }
}

impl<S: AsyncStore + ?Sized> AsyncStore for std::sync::Arc<S> {
    fn execute<'a>(&'a self, request: &'a StoreRequest) -> StoreFuture<'a> {
        (**self).execute(request)
    }
}
