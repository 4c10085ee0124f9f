"""MF-MDP (SPEC section 6): the explicit distribution over latent opinion states that MF-LLM's
text mean field lacks, for long horizons.

- macro.py: the latent states, step histograms, m_0, each agent's seeded state draw, the
  distribution as prompts show it.
- transition.py, transition_train.py: the state-transition model f_psi, its losses
  (L_seq + alpha * L_roll) and its training loop.
"""
