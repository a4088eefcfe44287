"""Chat over the CRM: typed query plans, answered from the caller's own records."""
