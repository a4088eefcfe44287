"""The CRM domain: records, their validation, listing, and import."""
