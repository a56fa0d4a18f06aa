"""What a build or an image analysis shows: the report, comparison, CI gates, explanations, x-ray, and their
renderers."""
