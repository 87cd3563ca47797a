-- The order application's tables: the same DDL on SQLite and PostgreSQL. Money is integer cents (BIGINT),
-- times are epoch seconds (DOUBLE PRECISION). The CHECK constraints are the last line of defence: stock can
-- never go below zero and a charge can never be refunded beyond what it captured, whatever the code does.

-- catalogue and inventory
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT PRIMARY KEY REFERENCES products (sku),
    available BIGINT NOT NULL CHECK (available >= 0),
    received BIGINT NOT NULL CHECK (received >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('held', 'confirmed', 'released')),
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS reservation_lines (
    reservation_id TEXT NOT NULL REFERENCES reservations (id),
    sku TEXT NOT NULL REFERENCES products (sku),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, sku)
);

-- orders
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    request_fingerprint TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    card_token TEXT NOT NULL,  -- the gateway's token for the card: the card number is never stored
    card_last4 TEXT,
    card_brand TEXT,
    shipping_address TEXT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN (
        'created', 'payment_pending', 'awaiting_shipment', 'shipped', 'completed', 'failed', 'cancelled'
    )),
    cancel_reason TEXT,  -- why it was cancelled (the reason its run was cancelled with)
    tax_cents BIGINT NOT NULL DEFAULT 0 CHECK (tax_cents >= 0),
    total_cents BIGINT NOT NULL CHECK (total_cents >= 0),
    payment_id TEXT,
    reservation_id TEXT,
    shipment_id TEXT,
    failure_reason TEXT,
    workflow_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line_no INTEGER NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
    dropped BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE IF NOT EXISTS order_history (
    order_id TEXT NOT NULL REFERENCES orders (id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS order_history_by_order ON order_history (order_id);

-- the payment gateway simulator's own state (a real provider keeps this on its side). Its card vault
-- keeps what a token stands for (brand, last four digits, how the test card behaves), never the number.
CREATE TABLE IF NOT EXISTS gateway_cards (
    token TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    decline_code TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_charges (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    reference TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    currency TEXT NOT NULL,
    card_token TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'declined')),
    decline_code TEXT,
    refunded_cents BIGINT NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_charges_by_reference ON gateway_charges (reference);
CREATE TABLE IF NOT EXISTS gateway_refunds (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    charge_id TEXT NOT NULL REFERENCES gateway_charges (id),
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    created_at DOUBLE PRECISION NOT NULL
);

-- shipping (the carrier simulator's labels)
CREATE TABLE IF NOT EXISTS shipments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('label_created', 'cancelled')),
    created_at DOUBLE PRECISION NOT NULL
);

-- notifications: the outbox, written in the same transaction as the change it announces, and the
-- email provider simulator's record of what it delivered
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    claimed_until DOUBLE PRECISION,
    sent_at DOUBLE PRECISION,
    last_error TEXT,
    UNIQUE (order_id, kind)
);
CREATE TABLE IF NOT EXISTS mailbox (
    message_id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    delivered_at DOUBLE PRECISION NOT NULL
);
