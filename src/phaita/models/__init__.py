"""PHAITA components. Every pretrained model they use is loaded through
:mod:`phaita.utils.model_loader` (one loader call per model), with the default names from the
package's model manifest (:mod:`phaita.manifest`).

- :class:`DiagnosisDiscriminator` -- complaint -> ranked (ICD-10 code, condition, probability).
- :class:`ComplaintGenerator` -- condition -> what the patient says (LM or templates).
- :class:`QuestionGenerator` -- the next triage question, by expected information gain.
- :class:`HashingFeaturizer` -- the non-neural text featurizer.

``phaita.utils.realism_scorer.RealismScorer`` is the fourth component.
"""

from phaita.models.discriminator import DiagnosisDiscriminator
from phaita.models.featurizer import HashingFeaturizer
from phaita.models.generator import ComplaintGenerator
from phaita.models.question_generator import Question, QuestionGenerator

__all__ = ["DiagnosisDiscriminator", "ComplaintGenerator", "QuestionGenerator", "Question", "HashingFeaturizer"]
