"""The paper's settings, each once ("Using a Variational Autoencoder in the Task of Overlaying
Multiple Images", GraphiCon 2021): what Section 3 trains with, the latent region Figure 3 samples,
and how Section 4 trains an overlay model. The notebooks' parameters cells repeat them as literals
(papermill needs literals); `config.DEFAULTS` is built from this module and a test checks that the
cells agree."""

# Section 3: the VAE of the keras.io example, 100 epochs, minibatch 10, RMSprop at 2e-3
LATENT_DIM = 2
EPOCHS = 100
BATCH_SIZE = 10
LEARNING_RATE = 2e-3
OPTIMIZER = "rmsprop"
TRAINING = {
    "latent_dim": LATENT_DIM,
    "epochs": EPOCHS,
    "batch_size": BATCH_SIZE,
    "learning_rate": LEARNING_RATE,
}

# Figure 3: z1 in [-15, 15], z2 in [-10, 10], in increments of 0.1
Z1_RANGE = (-15.0, 15.0)
Z2_RANGE = (-10.0, 10.0)
BOX = (Z1_RANGE, Z2_RANGE)
STEP = 0.1

# Section 4: many copies of each source image, every minibatch holding every source
COPIES = 500
OVERLAY_EPOCHS = 20
