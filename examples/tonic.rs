//! A tonic gRPC service whose methods need different scopes, and a client that shows the
//! answers a caller gets: OK, `PERMISSION_DENIED` and `UNAUTHENTICATED`.
//!
//! ```text
//! cargo run --example tonic
//! ```
//!
//! Runs in one process: it issues tokens through [`Tokens`], starts the `orders.v1.Orders`
//! server (see `proto/orders.proto`; the generated code is checked in, so no `protoc` is
//! needed) on a free port of 127.0.0.1, calls it with a tonic client, prints the code and
//! message of every answer, and exits 0 when each was the expected one.
//!
//! The wiring:
//!
//! - `Server::builder().layer(tokens.layer())`: [`PatLayer`](tower_pat::PatLayer) resolves
//!   the bearer token of every call, answering a missing or bad one with a trailers-only
//!   `UNAUTHENTICATED`;
//! - `.layer(map)`: one [`ScopeMapLayer`] gives each gRPC method its requirement
//!   (`ListOrders` needs `orders:read` or `orders:read:status`, `CreateOrder`
//!   `orders:create`, `GetUser` `user:read`), checked against the registry at startup; a
//!   token that falls short gets `PERMISSION_DENIED` naming the scopes, and a method the
//!   map does not name is denied;
//! - the handlers read the [`AccessToken`] from `request.extensions()`.

use std::{
    error::Error,
    sync::{Mutex, PoisonError},
};

use tokio::{net::TcpListener, sync::oneshot};
use tonic::{
    Code, Request, Response, Status,
    transport::{Endpoint, Server, server::TcpIncoming},
};
use tower_pat::{
    AccessToken, MemoryStore, Requirement, ScopeMapLayer, Tokens, scope::ScopeRegistry,
};

#[allow(clippy::all, missing_docs, unreachable_pub)]
mod pb {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/orders.v1.rs"));
}

use pb::{
    CreateOrderRequest, GetUserRequest, ListOrdersRequest, ListOrdersResponse, Order, User,
    orders_client::OrdersClient,
    orders_server::{self, OrdersServer},
};

/// The service implementation: an order book shared by every caller.
#[derive(Default)]
struct Shop {
    orders: Mutex<Vec<Order>>,
}

/// The token `PatLayer` resolved for this call.
fn token<T>(request: &Request<T>) -> Result<AccessToken, Status> {
    // Reaching a handler without one would mean the server was built without PatLayer.
    request
        .extensions()
        .get::<AccessToken>()
        .cloned()
        .ok_or_else(|| Status::internal("no PatLayer in front of the service"))
}

#[tonic::async_trait]
impl orders_server::Orders for Shop {
    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let token = token(&request)?;
        let mut orders = self
            .orders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Reached with orders:read or orders:read:status; a token that may only check
        // statuses sees them without the contents.
        if token.cant("orders:read") {
            for order in &mut orders {
                order.item.clear();
            }
        }
        Ok(Response::new(ListOrdersResponse { orders }))
    }

    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let req = request.get_ref();
        if req.item.is_empty() || req.quantity == 0 {
            return Err(Status::invalid_argument(
                "an order needs an item and a quantity",
            ));
        }
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        let order = Order {
            id: 1001 + orders.len() as u64,
            item: req.item.clone(),
            quantity: req.quantity,
            status: "pending".into(),
        };
        orders.push(order.clone());
        Ok(Response::new(order))
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let token = token(&request)?;
        Ok(Response::new(User {
            id: token.user_id().to_string(),
            token_name: token.name().to_owned(),
            scopes: token.scopes().iter().map(|s| s.to_string()).collect(),
        }))
    }
}

/// A request carrying `Authorization: Bearer <token>` when a token is given.
fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .expect("a token is visible ASCII");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Prints the outcome of one call; returns whether its code was `expected`.
fn report<T: std::fmt::Debug>(
    what: &str,
    result: Result<Response<T>, Status>,
    expected: Code,
) -> bool {
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let verdict = if code == expected { "ok" } else { "UNEXPECTED" };
    match result {
        Ok(response) => println!("{what}\n  -> OK [{verdict}] {:?}", response.get_ref()),
        Err(status) => println!(
            "{what}\n  -> {:?} ({}) [{verdict}] {:?}",
            status.code(),
            status.code() as i32,
            status.message()
        ),
    }
    code == expected
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let registry = ScopeRegistry::new()
        .scope("user:read", "Retrieve the user info")
        .scope("orders:create", "Place orders")
        .scope("orders:read", "List orders")
        .scope("orders:read:status", "Check order status");
    let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
    let full = tokens
        .create(
            7,
            "CI deploy",
            ["orders:read", "orders:create", "user:read"],
        )
        .await?;
    let reader = tokens.create(7, "Dashboard", ["orders:read"]).await?;
    let tracker = tokens
        .create(7, "Parcel tracker", ["orders:read:status"])
        .await?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let map = ScopeMapLayer::grpc()
        .registry(tokens.registry())
        .route(
            "/orders.v1.Orders/ListOrders",
            Requirement::any(["orders:read", "orders:read:status"]),
        )
        .route(
            "/orders.v1.Orders/CreateOrder",
            Requirement::all(["orders:create"]),
        )
        .route("/orders.v1.Orders/GetUser", Requirement::all(["user:read"]));
    let server = tokio::spawn(
        Server::builder()
            .layer(tokens.layer())
            .layer(map)
            .add_service(OrdersServer::new(Shop::default()))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stopped.await;
            }),
    );
    println!("orders.v1.Orders serving on {addr}\n");

    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = OrdersClient::new(channel);
    let full_secret = full.token.expose_secret();
    let reader_secret = reader.token.expose_secret();
    let order = || CreateOrderRequest {
        item: "coffee beans".into(),
        quantity: 2,
    };
    let mut ok = true;

    ok &= report(
        "CreateOrder with a token holding orders:create",
        client
            .create_order(with_token(order(), Some(full_secret)))
            .await,
        Code::Ok,
    );
    ok &= report(
        "ListOrders with a token holding orders:read",
        client
            .list_orders(with_token(ListOrdersRequest {}, Some(reader_secret)))
            .await,
        Code::Ok,
    );
    ok &= report(
        "ListOrders with a token holding only orders:read:status (items hidden)",
        client
            .list_orders(with_token(
                ListOrdersRequest {},
                Some(tracker.token.expose_secret()),
            ))
            .await,
        Code::Ok,
    );
    ok &= report(
        "GetUser with a token holding user:read",
        client
            .get_user(with_token(GetUserRequest {}, Some(full_secret)))
            .await,
        Code::Ok,
    );
    ok &= report(
        "CreateOrder with a token holding only orders:read",
        client
            .create_order(with_token(order(), Some(reader_secret)))
            .await,
        Code::PermissionDenied,
    );
    ok &= report(
        "GetUser with a token holding only orders:read",
        client
            .get_user(with_token(GetUserRequest {}, Some(reader_secret)))
            .await,
        Code::PermissionDenied,
    );
    ok &= report(
        "ListOrders without a token",
        client
            .list_orders(with_token(ListOrdersRequest {}, None))
            .await,
        Code::Unauthenticated,
    );
    ok &= report(
        "ListOrders with a made-up token",
        client
            .list_orders(with_token(
                ListOrdersRequest {},
                Some("pat_0000000000000000000000000000000000000000"),
            ))
            .await,
        Code::Unauthenticated,
    );
    tokens.revoke(&7, reader.record.id).await?;
    ok &= report(
        "ListOrders with the orders:read token, just revoked",
        client
            .list_orders(with_token(ListOrdersRequest {}, Some(reader_secret)))
            .await,
        Code::Unauthenticated,
    );

    let _ = stop.send(());
    server.await??;
    if !ok {
        return Err("an answer was not the expected one".into());
    }
    println!("\nevery answer was the expected one");
    Ok(())
}
