//! What a caught panic said, for the per-record and per-file error reports of the loader's and
//! the ingest's workers (both catch a decoder's panic rather than lose a thread or hang).

use std::any::Any;

/// The message of a panic payload (`panic!("...")` carries a `&str` or a `String`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_of_both_payload_kinds() {
        let caught = |f: fn()| std::panic::catch_unwind(f).expect_err("panics");
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let a = caught(|| panic!("plain"));
        let b = caught(|| panic!("formatted {}", 7));
        let c = caught(|| std::panic::panic_any(42u8));
        std::panic::set_hook(hook);
        assert_eq!(super::message(a.as_ref()), "plain");
        assert_eq!(super::message(b.as_ref()), "formatted 7");
        assert_eq!(super::message(c.as_ref()), "no message");
    }
}
