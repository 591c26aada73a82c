"""Request models: a JSON body in, a small frozen value out, or a 400 naming the param."""
