"""A synthetic shop to try the product on (`generate_demo_shop`) and the closed loop run forward (`simulate`)."""
