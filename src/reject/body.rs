//! The application's body for rejected requests: the hook given to
//! [`PatLayer::rejection_body`](crate::PatLayer::rejection_body), set once on the layer
//! and found by every scope check and extractor behind it.

use std::{
    any::{Any, type_name},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use http::Response;

use super::Rejection;

/// The hook, kept without its body type (the layer is not generic over bodies); the
/// response's body type is recovered when a rejection is answered. Empty: no hook, an
/// empty body.
#[derive(Clone, Default)]
pub(crate) struct RejectionBody(Option<Arc<Hook>>);

/// One hook, with the name of the body type it makes and whether it has been found
/// answering for another body type (warned about once, per hook).
struct Hook {
    make: Box<dyn Any + Send + Sync>,
    body_type: &'static str,
    mismatch_warned: AtomicBool,
}

type MakeBody<B> = Box<dyn Fn(&Rejection<'_>) -> Response<B> + Send + Sync>;

impl RejectionBody {
    pub(crate) fn new<B, F>(f: F) -> Self
    where
        B: 'static,
        F: Fn(&Rejection<'_>) -> Response<B> + Send + Sync + 'static,
    {
        let make: MakeBody<B> = Box::new(f);
        Self(Some(Arc::new(Hook {
            make: Box::new(make),
            body_type: type_name::<B>(),
            mismatch_warned: AtomicBool::new(false),
        })))
    }

    /// The hook's answer, or an empty one without a hook, or for a service whose body
    /// type is not the hook's (an axum hook in front of tonic, say): that is logged once
    /// for each hook, naming both types.
    pub(crate) fn response<B: Default + 'static>(&self, rejection: &Rejection<'_>) -> Response<B> {
        let Some(hook) = &self.0 else {
            return Response::new(B::default());
        };
        match hook.make.downcast_ref::<MakeBody<B>>() {
            Some(make) => make(rejection),
            None => {
                if !hook.mismatch_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        hook_body = hook.body_type,
                        service_body = type_name::<B>(),
                        "PatLayer::rejection_body makes another response body type than this service's; rejections here get an empty body"
                    );
                }
                Response::new(B::default())
            }
        }
    }
}

impl fmt::Debug for RejectionBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(hook) => f
                .debug_tuple("RejectionBody")
                .field(&format_args!("{}", hook.body_type))
                .finish(),
            None => f.write_str("RejectionBody(empty)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::RejectionKind;

    fn hook() -> RejectionBody {
        RejectionBody::new(|r: &Rejection<'_>| Response::new(r.kind().code().to_owned()))
    }

    #[test]
    fn the_hook_answers_for_its_body_type_and_names_it() {
        let body = hook();
        let r = Rejection::new(RejectionKind::ExpiredToken, "api", None);
        assert_eq!(body.response::<String>(&r).body(), "expired_token");
        assert_eq!(format!("{body:?}"), "RejectionBody(alloc::string::String)");
        assert_eq!(
            format!("{:?}", RejectionBody::default()),
            "RejectionBody(empty)"
        );
    }

    #[test]
    fn another_body_type_gets_an_empty_body_and_each_hook_warns_once() {
        let (first, second) = (hook(), hook());
        let r = Rejection::new(RejectionKind::ExpiredToken, "api", None);
        assert_eq!(first.response::<Vec<u8>>(&r).body(), &Vec::<u8>::new());
        let warned = |b: &RejectionBody| {
            b.0.as_ref()
                .is_some_and(|h| h.mismatch_warned.load(Ordering::Relaxed))
        };
        assert!(warned(&first));
        // Per hook, not per process: the second hook has not warned yet.
        assert!(!warned(&second));
        assert_eq!(second.response::<Vec<u8>>(&r).body(), &Vec::<u8>::new());
        assert!(warned(&second));
    }
}
