"""Batch sentiment analysis of customer reviews: daily reviews scored negative, neutral or
positive by the weekly champion model, rolled up per product and day (issue 16)."""
