"""Survey prompts as real audio: each question's text spoken by espeak-ng, resampled by sox to the
8 kHz 16-bit mono WAV that Asterisk plays without transcoding surprises.

Layout: ``<prompts_dir>/<language>/<survey>/<file>.wav``; Asterisk is given the path without the
extension. Re-prompts are pre-joined ("Sorry, that is not a valid answer." + the question) so the
caller can barge in anywhere with one key press, and the first question carries the intro.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ivr.settings import QuestionConfig, Settings, SurveyConfig
from ivr.survey_script import PromptSet

GOODBYE = "goodbye"
THANKS = "thanks"


class PromptError(RuntimeError):
    pass


@dataclass(frozen=True)
class PromptText:
    name: str
    texts: tuple[str, ...]


def survey_prompt_dir(prompts_dir: Path, language: str, survey: str) -> Path:
    return prompts_dir / language / survey


def question_prompts(prompts_dir: Path, language: str, survey: str, question: QuestionConfig) -> PromptSet:
    base = survey_prompt_dir(prompts_dir, language, survey)
    return PromptSet(
        first=str(base / f"q-{question.key}"),
        again_invalid=str(base / f"q-{question.key}-invalid"),
        again_noinput=str(base / f"q-{question.key}-noinput"),
    )


def global_goodbye(prompts_dir: Path, language: str) -> str:
    """The prompt the dialplan plays when csat cannot be reached: one per language, survey-independent."""
    return str(prompts_dir / language / GOODBYE)


def prompt_texts(survey: SurveyConfig) -> list[PromptText]:
    """Every file one survey needs, with the sentences it is made of."""
    out: list[PromptText] = []
    for index, q in enumerate(survey.questions):
        intro = (survey.intro_text,) if index == 0 and survey.intro_text else ()
        invalid = q.invalid_text or survey.invalid_text
        out.append(PromptText(f"q-{q.key}", (*intro, q.text)))
        if q.type != "comment":
            out.append(PromptText(f"q-{q.key}-invalid", (invalid, q.text)))
            out.append(PromptText(f"q-{q.key}-noinput", (survey.noinput_text, q.text)))
    out.append(PromptText(THANKS, (survey.thanks_text,)))
    out.append(PromptText(GOODBYE, (survey.goodbye_text,)))
    return out


def missing_prompts(settings: Settings) -> list[Path]:
    missing: list[Path] = []
    prompts_dir = settings.resolved_prompts_dir
    for language, survey_name, survey in _surveys_by_language(settings):
        base = survey_prompt_dir(prompts_dir, language, survey_name)
        missing += [
            base / f"{p.name}.wav" for p in prompt_texts(survey) if not (base / f"{p.name}.wav").is_file()
        ]
        if not (prompts_dir / language / f"{GOODBYE}.wav").is_file():
            missing.append(prompts_dir / language / f"{GOODBYE}.wav")
    return sorted(set(missing))


def build_prompts(settings: Settings, *, force: bool = False) -> list[Path]:
    """Regenerate the audio of every survey in every language in use; returns the files written."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise PromptError(f"{tool} is not installed (Debian: apt-get install espeak-ng sox)")
    written: list[Path] = []
    prompts_dir = settings.resolved_prompts_dir
    for language, survey_name, survey in _surveys_by_language(settings):
        base = survey_prompt_dir(prompts_dir, language, survey_name)
        base.mkdir(parents=True, exist_ok=True)
        voice = survey.voice or language
        for prompt in prompt_texts(survey):
            target = base / f"{prompt.name}.wav"
            if force or not target.is_file():
                synthesize(prompt.texts, target, voice)
                written.append(target)
        goodbye = prompts_dir / language / f"{GOODBYE}.wav"
        if force or not goodbye.is_file():
            shutil.copyfile(base / f"{GOODBYE}.wav", goodbye)
            written.append(goodbye)
    return written


def synthesize(texts: tuple[str, ...], target: Path, voice: str) -> None:
    """Speak each sentence, join them with a short pause, and write Asterisk's 8 kHz mono WAV."""
    with tempfile.TemporaryDirectory() as tmp:
        parts: list[str] = []
        for i, text in enumerate(texts):
            raw = Path(tmp) / f"{i}.wav"
            _run(["espeak-ng", "-v", voice, "-s", "155", "-w", str(raw), text])
            parts.append(str(raw))
            if i < len(texts) - 1:
                pause = Path(tmp) / f"{i}-pause.wav"
                _run(["sox", "-n", "-r", "22050", "-c", "1", str(pause), "trim", "0", "0.3"])
                parts.append(str(pause))
        tmp_target = target.with_suffix(".tmp.wav")
        _run(["sox", *parts, "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp_target)])
        tmp_target.replace(target)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PromptError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")


def _surveys_by_language(settings: Settings) -> list[tuple[str, str, SurveyConfig]]:
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str, SurveyConfig]] = []
    pairs = [(settings.default_policy.language, settings.default_policy.survey)]
    pairs += [(p.language, p.survey) for p in settings.queues.values()]
    for language, survey_name in pairs:
        survey = settings.surveys[survey_name]
        key = (language or survey.language, survey_name)
        if key not in seen:
            seen.add(key)
            out.append((key[0], survey_name, survey))
    return out
