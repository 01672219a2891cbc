//! Untrusted bytes from clients into the public API's decoders
//! (TN-SEC-002): every request message, decoded by prost and converted into
//! a core command, is refused with a reason or converted, never a panic;
//! the answers a client decodes likewise.

use proptest::prelude::*;
use prost::Message as _;
use tenure_proto::{convert, v1};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn tn_sec_002_arbitrary_request_bytes_convert_or_are_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        owner in "[a-z]{0,8}",
    ) {
        if let Ok(r) = v1::AcquireRequest::decode(bytes.as_slice()) {
            let _ = convert::acquire(&r, &owner);
        }
        if let Ok(r) = v1::RenewRequest::decode(bytes.as_slice()) {
            let _ = convert::renew(&r, &owner);
        }
        if let Ok(r) = v1::ReleaseRequest::decode(bytes.as_slice()) {
            let _ = convert::release(&r, &owner);
        }
        if let Ok(r) = v1::ForceReleaseRequest::decode(bytes.as_slice()) {
            let _ = convert::force_release(&r, &owner);
        }
        if let Ok(r) = v1::KeepAliveRequest::decode(bytes.as_slice()) {
            let _ = convert::keep_alive(&r, &owner);
        }
        if let Ok(r) = v1::ListRequest::decode(bytes.as_slice()) {
            let _ = convert::page_after(&r.page_token);
        }
        let _ = v1::WatchRequest::decode(bytes.as_slice());
        let _ = v1::SnapshotChunk::decode(bytes.as_slice());
    }

    #[test]
    fn tn_sec_002_arbitrary_answer_bytes_convert_or_are_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Ok(l) = v1::Lease::decode(bytes.as_slice()) {
            let _ = convert::lease_view(&l);
        }
        if let Ok(s) = v1::LockState::decode(bytes.as_slice()) {
            let _ = convert::lock_view(&s);
        }
        if let Ok(e) = v1::WatchEvent::decode(bytes.as_slice()) {
            let _ = convert::audit_event(&e);
        }
    }

    #[test]
    fn tn_sec_002_arbitrary_page_tokens_are_refused_or_read(token in ".{0,64}") {
        let _ = convert::page_after(&token);
    }
}
