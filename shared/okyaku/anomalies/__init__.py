"""Anomalies, weekly insights and notifications: detectors (pure), scans per organization,
storage with dedup, e-mail through SES. See README, "Anomalies, insights and notifications"."""
