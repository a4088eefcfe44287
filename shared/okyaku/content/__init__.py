"""AI content generation for social platforms and email, with platform limits enforced."""
