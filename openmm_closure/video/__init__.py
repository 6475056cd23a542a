"""The polymer from video: frames as images and pixel sets (:mod:`.frames`), pixel
datasets (:mod:`.pixel_dataset`) and rendered videos (:mod:`.render`).

A namespace only: it imports nothing, so that importing one module of it loads
none of the others.
"""
