"""GraphQL over the records and batch services (see docs/graphql.md)."""
