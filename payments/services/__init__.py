"""Payment records and provider calls. Provider calls happen outside database
transactions, each one recorded first as a PaymentOperation whose id gives its
idempotency key. Nothing here knows about orders: the order use cases (flows) do."""
