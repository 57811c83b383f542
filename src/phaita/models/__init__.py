"""PHAITA components. Every pretrained model they use is loaded through
:mod:`phaita.loader` (one loader call per model), with the default names from the
package's model manifest (:mod:`phaita.data.manifest`).

- :class:`DiagnosisDiscriminator` -- complaint -> ranked (ICD-10 code, condition, probability).
- :class:`ComplaintGenerator` -- condition -> what the patient says (LM or templates).
- :class:`QuestionGenerator` -- the next triage question, by expected information gain.
- :mod:`phaita.models.triage` -- one triage step (red flags, diagnoses, the next question or why it stops);
  :mod:`phaita.models.policy` -- what to ask next and when to stop; :mod:`phaita.models.conversation`
  -- a whole conversation; :mod:`phaita.models.question_check` -- is a question fit to show.
- :class:`RealismScorer` -- how much a complaint sounds like a real patient (also importable from
  ``phaita.utils.realism_scorer``, the specification's path).
- :class:`HashingFeaturizer` -- the non-neural text featurizer.
"""

from phaita.models.discriminator import DiagnosisDiscriminator
from phaita.models.featurizer import HashingFeaturizer
from phaita.models.generator import ComplaintGenerator
from phaita.models.question_generator import Question, QuestionGenerator
from phaita.models.realism import RealismScorer

__all__ = ["DiagnosisDiscriminator", "ComplaintGenerator", "QuestionGenerator", "Question", "HashingFeaturizer",
           "RealismScorer"]
