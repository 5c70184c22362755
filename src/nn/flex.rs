//! What ember's own burn-flex kernels share: the switch that turns them off, the dispatch from code
//! generic over backends to the flex types, and reading a tensor's values.

use std::any::Any;

use burn_flex::FlexTensor;

/// Whether ember's own flex kernels are on (they are unless `EMBER_BURN_KERNELS=1`).
pub fn own_kernels() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("EMBER_BURN_KERNELS").map_or(true, |v| v != "1"))
}

/// `t` under its concrete type `U`, when that is what `T` is: how a kernel for one backend is reached
/// from code generic over backends.
pub(crate) fn retype<T: 'static, U: 'static>(t: T) -> Option<U> {
    (Box::new(t) as Box<dyn Any>).downcast::<U>().ok().map(|u| *u)
}

/// The f32 elements of `t` in row-major order: borrowed when already so laid out, else copied.
pub(crate) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().into_data().into_vec::<f32>().expect("f32 tensor")),
    }
}

