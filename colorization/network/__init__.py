"""The network side: the fusion model and its model card, the Xception extractor that feeds it, colour
classification's bins and decoder, training, and the :class:`~colorization.network.colorizer.Colorizer` that
colours with a trained model. The only package that imports Keras."""
