//! tonic end to end over loopback: `PatLayer` as a server layer, per-method scopes from one
//! `ScopeMapLayer`, and the generated client seeing gRPC-native statuses.

use crate::common;

#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod pb {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/orders.v1.rs"));
}

use std::net::SocketAddr;

use pb::{
    CreateOrderRequest, GetUserRequest, ListOrdersRequest, ListOrdersResponse, Order, User,
    orders_client::OrdersClient,
    orders_server::{Orders, OrdersServer},
};
use time::{Duration, OffsetDateTime};
use tonic::{
    Code, Status,
    transport::{Channel, Server, server::TcpIncoming},
};
use tower_pat::{
    AccessToken, CreateToken, MemoryStore, Requirement, Tokens,
    clock::ManualClock,
    require::{ScopeMapLayer, Unmapped},
    token::TokenFormat,
};

use common::{Fault, Faulty, registry};

type Store = Faulty<MemoryStore<i64>>;

/// The service: every method reads the `AccessToken` `PatLayer` put in the extensions.
#[derive(Clone, Copy, Debug, Default)]
struct Shop;

fn token_of<T>(request: &tonic::Request<T>) -> Result<AccessToken, Status> {
    request
        .extensions()
        .get::<AccessToken>()
        .cloned()
        .ok_or_else(|| Status::internal("no AccessToken in the extensions"))
}

#[tonic::async_trait]
impl Orders for Shop {
    async fn list_orders(
        &self,
        request: tonic::Request<ListOrdersRequest>,
    ) -> Result<tonic::Response<ListOrdersResponse>, Status> {
        let token = token_of(&request)?;
        Ok(tonic::Response::new(ListOrdersResponse {
            orders: vec![Order {
                id: 1,
                item: format!("tea for user {}", token.user_id()),
                quantity: 1,
                status: "shipped".into(),
            }],
        }))
    }

    async fn create_order(
        &self,
        request: tonic::Request<CreateOrderRequest>,
    ) -> Result<tonic::Response<Order>, Status> {
        let token = token_of(&request)?;
        let req = request.into_inner();
        Ok(tonic::Response::new(Order {
            id: 2,
            item: req.item,
            quantity: req.quantity,
            status: if token.can("orders:read") {
                "pending (trackable)".into()
            } else {
                "pending".into()
            },
        }))
    }

    async fn get_user(
        &self,
        request: tonic::Request<GetUserRequest>,
    ) -> Result<tonic::Response<User>, Status> {
        let token = token_of(&request)?;
        Ok(tonic::Response::new(User {
            id: token.user_id().to_string(),
            token_name: token.name().to_owned(),
            scopes: token.scopes().iter().map(|s| s.to_string()).collect(),
        }))
    }
}

/// Each method's scopes, checked against the registry when the map is built.
fn map(tokens: &Tokens<Store>) -> ScopeMapLayer {
    ScopeMapLayer::grpc()
        .registry(tokens.registry())
        .route(
            "/orders.v1.Orders/ListOrders",
            Requirement::all(["orders:read"]),
        )
        .route(
            "/orders.v1.Orders/CreateOrder",
            Requirement::all(["orders:create"]),
        )
        .route("/orders.v1.Orders/GetUser", Requirement::all(["user:read"]))
}

fn incoming() -> (TcpIncoming, SocketAddr) {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = incoming.local_addr().expect("local address");
    (incoming, addr)
}

/// The service behind `tokens.layer()` and the map of every method.
async fn start(tokens: &Tokens<Store>) -> OrdersClient<Channel> {
    start_with(tokens, map(tokens)).await
}

/// The whole server: the layer, the map, the service.
async fn start_with(tokens: &Tokens<Store>, map: ScopeMapLayer) -> OrdersClient<Channel> {
    let (incoming, addr) = incoming();
    let router = Server::builder()
        .layer(tokens.layer())
        .layer(map)
        .add_service(OrdersServer::new(Shop));
    tokio::spawn(async move {
        router.serve_with_incoming(incoming).await.expect("serve");
    });
    connect(addr).await
}

async fn connect(addr: SocketAddr) -> OrdersClient<Channel> {
    OrdersClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("an ASCII value"),
    );
    request
}

fn new_tokens() -> Tokens<Store> {
    Tokens::new(Faulty::new(MemoryStore::new()), registry())
}

#[track_caller]
fn assert_status(status: &Status, code: Code, message: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message, "{status:?}");
    assert!(status.metadata().get("www-authenticate").is_none());
}

#[tokio::test]
async fn the_right_token_gets_through_and_the_handler_sees_it() {
    let tokens = new_tokens();
    let mut client = start(&tokens).await;
    let all = tokens
        .create(7, "grpc cli", ["orders:read", "orders:create", "user:read"])
        .await
        .unwrap();
    let secret = all.token.expose_secret();

    let user = client
        .get_user(with_bearer(GetUserRequest {}, secret))
        .await
        .expect("GetUser")
        .into_inner();
    assert_eq!(user.id, "7");
    assert_eq!(user.token_name, "grpc cli");
    assert_eq!(user.scopes, ["orders:create", "orders:read", "user:read"]);

    let list = client
        .list_orders(with_bearer(ListOrdersRequest {}, secret))
        .await
        .expect("ListOrders")
        .into_inner();
    assert_eq!(list.orders.len(), 1);
    assert_eq!(list.orders[0].item, "tea for user 7");

    let order = client
        .create_order(with_bearer(
            CreateOrderRequest {
                item: "scones".into(),
                quantity: 3,
            },
            secret,
        ))
        .await
        .expect("CreateOrder")
        .into_inner();
    assert_eq!(order.item, "scones");
    assert_eq!(order.quantity, 3);
    assert_eq!(order.status, "pending (trackable)");

    // A token with only orders:create may create, and the handler can tell it cannot read.
    let creator = tokens.create(8, "c", ["orders:create"]).await.unwrap();
    let order = client
        .create_order(with_bearer(
            CreateOrderRequest {
                item: "jam".into(),
                quantity: 1,
            },
            creator.token.expose_secret(),
        ))
        .await
        .expect("CreateOrder")
        .into_inner();
    assert_eq!(order.status, "pending");
}

#[tokio::test]
async fn missing_scopes_are_permission_denied_naming_the_scope() {
    let tokens = new_tokens();
    let mut client = start(&tokens).await;
    let reader = tokens.create(1, "r", ["orders:read"]).await.unwrap();
    let secret = reader.token.expose_secret();

    let status = client
        .create_order(with_bearer(
            CreateOrderRequest {
                item: "x".into(),
                quantity: 1,
            },
            secret,
        ))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "insufficient scope: requires orders:create",
    );
    let status = client
        .get_user(with_bearer(GetUserRequest {}, secret))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "insufficient scope: requires user:read",
    );
    // The method it does hold a scope for works on the same channel.
    assert!(
        client
            .list_orders(with_bearer(ListOrdersRequest {}, secret))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn bad_or_missing_tokens_are_unauthenticated() {
    let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let clock = ManualClock::new(t0);
    let tokens = new_tokens().clock(clock.clone());
    let mut client = start(&tokens).await;
    let good = tokens.create(1, "g", ["user:read"]).await.unwrap();
    let revoked = tokens.create(1, "r", ["user:read"]).await.unwrap();
    tokens.revoke(&1, revoked.record.id).await.unwrap();
    let expiring = tokens
        .create_with(
            1,
            CreateToken::new("e")
                .scopes(["user:read"])
                .expires_in(Duration::minutes(5)),
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(5));

    let status = client
        .get_user(tonic::Request::new(GetUserRequest {}))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "missing bearer token");

    let good_secret = good.token.expose_secret();
    let bad_checksum = {
        let mut b = good_secret.as_bytes().to_vec();
        let last = b.len() - 1;
        b[last] = if b[last] == b'a' { b'b' } else { b'a' };
        String::from_utf8(b).unwrap()
    };
    let stranger = TokenFormat::default().generate().unwrap();
    let cases = [
        (bad_checksum, "the access token is malformed"),
        (
            format!("ghp_{}", &good_secret[4..]),
            "the access token is malformed",
        ),
        ("pat_short".to_owned(), "the access token is malformed"),
        (
            stranger.expose_secret().to_owned(),
            "the access token is not recognized",
        ),
        (
            revoked.token.expose_secret().to_owned(),
            "the access token has been revoked",
        ),
        (
            expiring.token.expose_secret().to_owned(),
            "the access token has expired",
        ),
        // Bad syntax: RFC 6750's invalid_request maps to UNAUTHENTICATED here.
        ("a b".to_owned(), "malformed or repeated credentials"),
    ];
    // Two Authorization headers are bad syntax too.
    let mut twice = with_bearer(GetUserRequest {}, good.token.expose_secret());
    let value = format!("Bearer {}", good.token.expose_secret())
        .parse()
        .unwrap();
    twice.metadata_mut().append("authorization", value);
    let status = client.get_user(twice).await.unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "malformed or repeated credentials",
    );

    for (token, message) in &cases {
        let status = client
            .get_user(with_bearer(GetUserRequest {}, token))
            .await
            .unwrap_err();
        assert_status(&status, Code::Unauthenticated, message);
    }
    // The good token still works; the expiring one did until its last second.
    assert!(
        client
            .get_user(with_bearer(GetUserRequest {}, good_secret))
            .await
            .is_ok()
    );
    clock.advance(Duration::seconds(-1));
    assert!(
        client
            .get_user(with_bearer(
                GetUserRequest {},
                expiring.token.expose_secret()
            ))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_failing_store_is_unavailable() {
    let tokens = new_tokens();
    let mut client = start(&tokens).await;
    let good = tokens.create(1, "g", ["user:read"]).await.unwrap();
    let secret = good.token.expose_secret();
    for (mode, async_only) in [(Fault::Fail, false), (Fault::Timeout, true)] {
        tokens.store().set(mode);
        tokens.store().async_only(async_only);
        let status = client
            .get_user(with_bearer(GetUserRequest {}, secret))
            .await
            .unwrap_err();
        assert_status(&status, Code::Unavailable, "token store unavailable");
    }
    tokens.store().set(Fault::Pass);
    assert!(
        client
            .get_user(with_bearer(GetUserRequest {}, secret))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_scope_map_without_pat_layer_is_internal() {
    let tokens = new_tokens();
    let good = tokens
        .create(1, "g", ["user:read", "orders:read"])
        .await
        .unwrap();
    let (incoming, addr) = incoming();
    let router = Server::builder()
        .layer(map(&tokens))
        .add_service(OrdersServer::new(Shop));
    tokio::spawn(async move {
        router.serve_with_incoming(incoming).await.expect("serve");
    });
    let mut client = connect(addr).await;
    for request in [
        with_bearer(GetUserRequest {}, good.token.expose_secret()),
        tonic::Request::new(GetUserRequest {}),
    ] {
        let status = client.get_user(request).await.unwrap_err();
        assert_status(&status, Code::Internal, "internal error");
    }
}

#[tokio::test]
async fn a_service_wide_entry_covers_every_method_and_exact_entries_win() {
    let tokens = new_tokens();
    let map = ScopeMapLayer::grpc()
        .registry(tokens.registry())
        .route("/orders.v1.Orders/*", Requirement::all(["user:read"]))
        .route(
            "/orders.v1.Orders/CreateOrder",
            Requirement::all(["orders:create"]),
        );
    let mut client = start_with(&tokens, map).await;
    let reader = tokens.create(1, "u", ["user:read"]).await.unwrap();
    let secret = reader.token.expose_secret();
    // Both methods without an entry of their own fall under the service's.
    assert!(
        client
            .get_user(with_bearer(GetUserRequest {}, secret))
            .await
            .is_ok()
    );
    assert!(
        client
            .list_orders(with_bearer(ListOrdersRequest {}, secret))
            .await
            .is_ok()
    );
    let status = client
        .create_order(with_bearer(CreateOrderRequest::default(), secret))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "insufficient scope: requires orders:create",
    );
}

#[tokio::test]
async fn unmapped_methods_are_denied_unless_authenticated_only() {
    let tokens = new_tokens();
    let only_list = || {
        ScopeMapLayer::grpc().registry(tokens.registry()).route(
            "/orders.v1.Orders/ListOrders",
            Requirement::all(["orders:read"]),
        )
    };
    let all = tokens
        .create(1, "all", ["orders:read", "orders:create", "user:read"])
        .await
        .unwrap();
    let secret = all.token.expose_secret();

    // Denied by default, whatever the token holds.
    let mut strict = start_with(&tokens, only_list()).await;
    let status = strict
        .get_user(with_bearer(GetUserRequest {}, secret))
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "insufficient scope");
    assert!(
        strict
            .list_orders(with_bearer(ListOrdersRequest {}, secret))
            .await
            .is_ok()
    );

    // Authenticated only: any valid token, and still none at all is refused.
    let mut lenient = start_with(&tokens, only_list().unmapped(Unmapped::Authenticated)).await;
    let nobody = tokens.create(2, "none", Vec::<&str>::new()).await.unwrap();
    assert!(
        lenient
            .get_user(with_bearer(GetUserRequest {}, nobody.token.expose_secret()))
            .await
            .is_ok()
    );
    let status = lenient
        .get_user(tonic::Request::new(GetUserRequest {}))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "missing bearer token");
}

#[tokio::test]
async fn a_bad_token_is_unauthenticated_before_the_map_is_consulted() {
    let tokens = new_tokens();
    // Everything unmapped: a map that would deny every method.
    let mut client = start_with(&tokens, ScopeMapLayer::grpc()).await;
    let stranger = TokenFormat::default().generate().unwrap();
    let status = client
        .get_user(with_bearer(GetUserRequest {}, stranger.expose_secret()))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "the access token is not recognized",
    );
}

#[test]
#[should_panic(
    expected = r#"scope map: "/orders.v1.Orders/ListOrders": undefined scope "orders:raed""#
)]
fn a_misspelt_scope_fails_at_startup_naming_it() {
    let tokens = new_tokens();
    let _ = ScopeMapLayer::grpc().registry(tokens.registry()).route(
        "/orders.v1.Orders/ListOrders",
        Requirement::all(["orders:raed"]),
    );
}
