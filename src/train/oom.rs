//! Recognising a device running out of memory. burn's tensor operations are infallible, so a device allocation
//! failure reaches the trainer as a panic (or, from ember's own code and the fault hook, as an error); both are
//! told apart from other failures by the words the runtimes use.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// Whether an error's text is a device's out-of-memory error (cubecl's, CUDA's allocation failures).
pub fn is_out_of_memory(text: &str) -> bool {
    text.to_lowercase().contains("out of memory")
        || text.contains("out-of-memory")
        || text.contains("CUBLAS_STATUS_ALLOC_FAILED")
        || text.contains("CUDA_ERROR_OUT_OF_MEMORY")
}

/// Runs `work`; a panic that says the device ran out of memory becomes `Err` with its text, any other panic goes
/// on unwinding.
pub fn catch_out_of_memory<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        if !is_out_of_memory(&text) {
            resume_unwind(payload);
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_out_of_memory_panic_is_caught_and_others_are_not() {
        assert_eq!(catch_out_of_memory(|| 3), Ok(3));
        let caught = catch_out_of_memory::<()>(|| panic!("An out-of-memory error happened during launch"));
        assert!(caught.unwrap_err().contains("out-of-memory"));
        let other = std::panic::catch_unwind(|| catch_out_of_memory::<()>(|| panic!("index out of bounds")));
        assert!(other.is_err(), "another panic goes on unwinding");
        assert!(is_out_of_memory("CUDA out of memory. Tried to allocate") && !is_out_of_memory("shape mismatch"));
    }
}
