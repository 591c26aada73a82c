"""Request models: a JSON body in, a frozen value out, or a 400 naming the param."""
