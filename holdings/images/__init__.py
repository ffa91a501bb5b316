"""Asset images (issue 20): uploads checked and stripped of their metadata (`services`), the describers that draft
an asset's description from an image (`describers`), and the API onto both (`api`)."""
