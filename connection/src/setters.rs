//! [`setters!`]: the builder methods of [`ListenerBuilder`](crate::ListenerBuilder)
//! and [`Client`](crate::Client) that set one option each, written once.

/// Writes, for each `name: Type;` with its docs, a builder method
/// `pub fn name(mut self, name: Type) -> Self` that sets the field of that
/// name.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $name: $ty) -> Self {
            self.$name = $name;
            self
        }
    )*};
}

pub(crate) use setters;
